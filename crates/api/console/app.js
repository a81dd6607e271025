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
  const r = await fetch(path, { ...opts, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
  if (r.status === 401 && path !== '/api/v1/auth/login') { signOut(); throw new Error('unauthenticated'); }
  const ct = r.headers.get('content-type') || '';
  const data = ct.includes('json') ? await r.json() : await r.text();
  if (!r.ok) { const e = new Error(data?.error?.message || r.statusText); e.status = r.status; throw e; }
  return data;
}

const VIEWS = {
  operator: ['alerts', 'events', 'plates', 'watchlist'],
  contractor: ['sites', 'tasks'],
  admin: ['alerts', 'events', 'plates', 'watchlist', 'sites', 'tasks', 'nodes', 'users', 'audit'],
};

function nav() {
  const n = $('#nav');
  n.replaceChildren(...VIEWS[me.role].map((v) => el('button', {
    type: 'button', class: v === view ? 'active' : '', 'data-view': v, onclick: () => show(v),
  }, t(v))));
  $('#who').textContent = `${me.name} (${me.role})`;
  $('#logout').hidden = false;
}

async function show(v) {
  view = v;
  nav();
  const main = $('#main');
  main.replaceChildren(el('p', { class: 'muted' }, '…'));
  try { await RENDER[v](main); } catch (e) { main.replaceChildren(el('p', { class: 'error' }, `${t('error')}: ${e.message}`)); }
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
  return el('article', { class: 'alert' + (acked ? ' acked' : '') + (a.plate ? ' wanted' : ''), 'data-alert': a.id, 'data-plate': a.plate || null },
    img,
    el('div', { class: 'meta' },
      a.plate
        ? el('div', { class: 'title' }, `${t('wanted')}: `, el('span', { class: 'plate' }, a.plate_display || a.plate), ` · ${a.watchlist_reason || ''}`)
        : el('div', { class: 'title' }, `${a.class} · ${a.rule}${a.zone ? ' / ' + a.zone : ''}`),
      el('div', {}, `${t('camera')}: ${a.camera_name} (${a.camera})`),
      el('div', {}, `${t('site')}: ${a.site_name}`),
      el('div', {}, `${t('time')}: ${fmt(a.started_at)}`),
      acked
        ? el('div', { class: 'ackd' }, `${t('acked_by')}: ${a.acked_by}, ${fmt(a.acked_at)}`)
        : el('button', { type: 'button', class: 'ack', onclick: (ev) => ack(a.id, ev.target) }, t('ack'))));
}

async function ack(id, btn) {
  btn.disabled = true;
  try { const a = await api(`/api/v1/alerts/${id}/ack`, { method: 'POST' }); upsertAlert(a); }
  catch (e) { btn.disabled = false; if (e.status === 409) { const a = await api(`/api/v1/alerts?limit=1&cursor=${id + 1}`); if (a.items[0]) upsertAlert(a.items[0]); } else alert(e.message); }
}

function upsertAlert(a) {
  alerts.set(a.id, a);
  const list = $('#alert-list');
  if (!list) return;
  const old = list.querySelector(`[data-alert="${a.id}"]`);
  const card = alertCard(a);
  if (old) old.replaceWith(card);
  else {
    const after = [...list.children].find((c) => Number(c.dataset.alert) < a.id);
    list.insertBefore(card, after || null);
  }
  $('#no-alerts')?.remove();
}

function connectStream() {
  if (es) es.close();
  // EventSource cannot send headers: the session cookie authenticates it, and it
  // resumes by itself with Last-Event-ID after a drop.
  es = new EventSource('/api/v1/alerts/stream');
  const status = () => { const s = $('#stream-status'); if (s) s.textContent = es.readyState === 1 ? t('live') : t('connecting'); };
  es.onopen = status; es.onerror = status;
  es.addEventListener('alert', (m) => upsertAlert(JSON.parse(m.data)));
  es.addEventListener('ack', (m) => upsertAlert(JSON.parse(m.data)));
}

const RENDER = {
  async alerts(main) {
    const page = await api('/api/v1/alerts?limit=100');
    main.replaceChildren(el('section', {},
      el('h2', {}, t('alerts'), ' ', el('small', { id: 'stream-status', class: 'muted' }, t('connecting'))),
      el('div', { id: 'alert-list', class: 'alerts' }, page.items.length ? null : el('p', { id: 'no-alerts', class: 'muted' }, t('no_alerts')))));
    page.items.forEach(upsertAlert);
    connectStream();
  },

  async events(main) {
    const form = el('form', { class: 'filters', id: 'event-search' },
      el('label', {}, t('camera'), el('input', { name: 'camera' })),
      el('label', {}, t('site'), el('input', { name: 'site' })),
      el('label', {}, t('class'), el('input', { name: 'class', placeholder: 'person' })),
      el('label', {}, t('since'), el('input', { name: 'since', type: 'datetime-local' })),
      el('label', {}, t('until'), el('input', { name: 'until', type: 'datetime-local' })),
      el('button', { type: 'submit' }, t('search')));
    const table = el('table', {}, el('thead', {}, el('tr', {}, ...['time', 'end', 'camera', 'site', 'class', 'rule', 'score', 'snapshot'].map((k) => el('th', {}, t(k))))), el('tbody'));
    const more = el('button', { type: 'button', hidden: true }, t('more'));
    let cursor = null;
    const run = async (append) => {
      const q = new URLSearchParams({ limit: '50' });
      for (const [k, v] of new FormData(form)) if (v) q.set(k, k === 'since' || k === 'until' ? new Date(v).toISOString() : v);
      if (append && cursor) q.set('cursor', cursor);
      const page = await api('/api/v1/events?' + q);
      const body = $('tbody', table);
      if (!append) body.replaceChildren();
      for (const e of page.items) {
        // When and why it ended: an event a crash or a lost camera closed says so.
        const end = e.ended_at ? `${fmt(e.ended_at)} · ${t('e_' + (e.end_reason || 'ended'))}` : t('e_open');
        body.append(el('tr', { 'data-end-reason': e.end_reason || 'open' }, el('td', {}, fmt(e.started_at)), el('td', {}, end), el('td', {}, e.camera), el('td', {}, e.site),
          el('td', {}, e.class), el('td', {}, e.rule), el('td', {}, e.score.toFixed(2)),
          el('td', {}, e.snapshot ? el('a', { href: `/api/v1/events/${e.id}/snapshot`, target: '_blank', rel: 'noopener' }, t('snapshot')) : t('none'))));
      }
      cursor = page.next_cursor; more.hidden = !cursor;
    };
    form.addEventListener('submit', (ev) => { ev.preventDefault(); run(false).catch((e) => alert(e.message)); });
    more.addEventListener('click', () => run(true).catch((e) => alert(e.message)));
    main.replaceChildren(el('section', {}, el('h2', {}, t('events')), form, table, more));
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
          el('tbody', {}, ...hits.map((h) => el('tr', { class: 'clickable', 'data-plate': h.plate, onclick: () => showTrack(h.plate).catch((e) => alert(e.message)) },
            el('td', {}, el('span', { class: 'plate' }, h.display)), el('td', {}, t('m_' + h.matched)), el('td', {}, h.sightings), el('td', {}, h.cameras),
            el('td', {}, fmt(h.first_seen)), el('td', {}, fmt(h.last_seen))))))
          : el('p', { class: 'muted' }, t('nothing_found')));
      } catch (e) { results.replaceChildren(el('p', { class: 'error' }, e.message)); }
    });
    main.replaceChildren(el('section', {}, el('h2', {}, t('plates')), form, results, track));
  },

  async watchlist(main) {
    const rows = await api('/api/v1/watchlist');
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
      try { await api('/api/v1/watchlist', { method: 'POST', body }); show('watchlist'); } catch (e) { alert(e.message); }
    });
    main.replaceChildren(el('section', {}, el('h2', {}, t('watchlist')), form,
      el('table', { id: 'watchlist' }, el('thead', {}, el('tr', {}, ...['plate', 'reason', 'added_by', 'created', 'expires', ''].map((k) => el('th', {}, k ? t(k) : '')))),
        el('tbody', {}, ...rows.map((w) => el('tr', { 'data-entry': w.id },
          el('td', {}, el('span', { class: 'plate' }, w.display)), el('td', {}, w.reason), el('td', {}, w.added_by), el('td', {}, fmt(w.added_at)),
          el('td', {}, w.expires_at ? fmt(w.expires_at) : t('none')),
          el('td', {}, el('button', { type: 'button', onclick: async () => {
            const reason = prompt(t('remove_reason'));
            if (!reason) return;
            try { await api(`/api/v1/watchlist/${w.id}`, { method: 'DELETE', body: { reason } }); show('watchlist'); } catch (e) { alert(e.message); }
          } }, t('remove')))))))));
  },

  async sites(main) {
    const [sites, up] = await Promise.all([api('/api/v1/sites'), api('/api/v1/uptime?scope=camera')]);
    const month = new Date().toISOString().slice(0, 7);
    const uptime = new Map(up.cameras.map((c) => [c.camera, c]));
    const sec = el('section', {}, el('h2', {}, t('sites'), ' ',
      el('a', { class: 'small', href: `/api/v1/uptime?month=${month}&scope=camera&format=csv` }, t('csv'))));
    for (const s of sites) {
      sec.append(el('div', { class: 'site card', 'data-site': s.id },
        el('h3', {}, s.name, ' ', el('small', { class: s.cameras_down ? 'bad' : 'muted' }, s.cameras_down ? `${s.cameras_down} ${t('down')}` : '')),
        el('div', { class: 'tiles' }, ...s.cameras.map((c) => {
          const state = c.enabled ? (c.state || 'unknown') : 'stopped';
          const u = uptime.get(c.camera);
          return el('div', { class: `tile s-${state}`, 'data-camera': c.camera, 'data-state': state, title: c.reason || '' },
            el('div', { class: 'title' }, c.name),
            el('div', {}, t('s_' + state), c.since ? ` ${t('since_t')} ${fmt(c.since)}` : ''),
            c.reason && state !== 'streaming' ? el('div', { class: 'small' }, c.reason) : null,
            u ? el('div', { class: 'small' }, `${t('uptime')}: ${u.uptime_percent.toFixed(2)}%`) : null,
            c.open_tasks ? el('div', { class: 'small bad' }, `${t('open_tasks')}: ${c.open_tasks}`) : null);
        }))));
    }
    // "unknown" spans are time before a camera's first recorded state: no data, not an outage.
    const outages = up.cameras.flatMap((c) => c.outages.filter((o) => o.state !== 'unknown').map((o) => ({ ...o, camera: c.camera }))).sort((a, b) => b.start.localeCompare(a.start)).slice(0, 50);
    sec.append(el('h3', {}, t('outages')), el('table', { id: 'outages' },
      el('thead', {}, el('tr', {}, ...['camera', 'start', 'end', 'state', 'reason'].map((k) => el('th', {}, t(k))))),
      el('tbody', {}, ...outages.map((o) => el('tr', {}, el('td', {}, o.camera), el('td', {}, fmt(o.start)),
        el('td', {}, o.ongoing ? t('ongoing') : fmt(o.end)), el('td', {}, t('s_' + o.state)), el('td', {}, o.reason))))));
    main.replaceChildren(sec);
  },

  async tasks(main) {
    const page = await api('/api/v1/maintenance/tasks?limit=200');
    const cols = ['open', 'assigned', 'in_progress', 'resolved', 'verified'];
    const next = { open: ['assigned', 'in_progress', 'resolved'], assigned: ['in_progress', 'resolved', 'open'], in_progress: ['resolved', 'assigned'], resolved: ['verified', 'in_progress'], verified: [] };
    const board = el('div', { class: 'board' }, ...cols.map((c) => el('div', { class: 'col', 'data-col': c },
      el('h3', {}, t('st_' + c)),
      ...page.items.filter((x) => x.state === c).map((x) => el('div', { class: 'task card' + (x.resolved_while_down ? ' flag' : ''), 'data-task': x.id, 'data-camera': x.camera || '' },
        el('div', { class: 'title' }, `#${x.id} ${x.camera || x.site} · ${x.kind}`),
        el('div', { class: 'small' }, x.reason),
        el('div', { class: 'small' }, `${t('opened')}: ${fmt(x.opened_at)}`),
        x.recovered_at ? el('div', { class: 'small good' }, `${t('recovered')}: ${fmt(x.recovered_at)}`) : null,
        x.resolved_while_down ? el('div', { class: 'small bad' }, t('resolved_while_down')) : null,
        x.assignee ? el('div', { class: 'small' }, `${t('assignee')}: ${x.assignee}`) : null,
        // Only an administrator verifies, and not a task they resolved themselves.
        el('div', { class: 'actions' }, ...next[x.state].filter((to) => to !== 'verified' || (me.role === 'admin' && x.resolved_by !== me.name)).map((to) => el('button', { type: 'button', onclick: async () => {
          const body = { state: to };
          if (to === 'assigned') { const a = prompt(t('assignee'), me.name); if (a === null) return; body.assignee = a; }
          try { await api(`/api/v1/maintenance/tasks/${x.id}`, { method: 'PATCH', body }); show('tasks'); } catch (e) { alert(e.message); }
        } }, t('to_' + to)))))))));
    main.replaceChildren(el('section', {}, el('h2', {}, t('tasks')), board));
  },

  async nodes(main) {
    const [nodes, cams, runs] = await Promise.all([api('/api/v1/nodes'), api('/api/v1/cameras'), api('/api/v1/bench/runs')]);
    main.replaceChildren(el('section', {},
      el('h2', {}, t('nodes')),
      el('table', { id: 'nodes' }, el('thead', {}, el('tr', {}, ...['node', 'heartbeat', 'capacity', 'cameras', 'version', 'clock'].map((k) => el('th', {}, t(k))))),
        el('tbody', {}, ...nodes.map((n) => el('tr', { class: n.stopped_at ? 'muted' : '' }, el('td', {}, n.name), el('td', {}, fmt(n.last_heartbeat)),
          el('td', {}, n.capacity), el('td', {}, n.cameras.join(', ') || t('none')), el('td', {}, n.version),
          // Node minus database: positive when the node's clock runs ahead. Beyond 5 s its time sync is broken.
          n.clock_offset_ms == null ? el('td', {}, t('none'))
            : el('td', { class: Math.abs(n.clock_offset_ms) > 5000 ? 'bad' : '' }, `${(-n.clock_offset_ms / 1000).toFixed(1)} s`))))),
      el('h2', {}, t('throughput')),
      el('table', {}, el('thead', {}, el('tr', {}, ...['camera', 'state', 'frames', 'fps', 'packet_loss', 'gop'].map((k) => el('th', {}, t(k))))),
        el('tbody', {}, ...cams.map((c) => el('tr', {}, el('td', {}, c.id), el('td', {}, t('s_' + c.status)),
          el('td', {}, `${c.frames_decoded} / ${c.frames_analysed}`), el('td', {}, c.health?.fps_measured?.toFixed(1) ?? t('none')),
          el('td', {}, c.health?.packet_loss_pct != null ? `${c.health.packet_loss_pct.toFixed(1)} %` : t('none')),
          el('td', {}, c.health?.gop_secs != null ? `${c.health.gop_secs.toFixed(1)} s` : t('none')))))),
      el('h3', {}, t('runs')),
      runs.length ? el('table', { id: 'bench-runs' },
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
        }))) : el('p', { class: 'muted' }, t('none'))));
  },

  async users(main) {
    const users = await api('/api/v1/users');
    const form = el('form', { class: 'filters' },
      el('input', { name: 'name', placeholder: t('username'), required: true }),
      el('select', { name: 'role' }, ...['operator', 'contractor', 'admin'].map((r) => el('option', { value: r }, r))),
      el('input', { name: 'password', type: 'password', placeholder: t('password'), minlength: 12, required: true }),
      el('button', { type: 'submit' }, t('add_user')));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const f = Object.fromEntries(new FormData(form));
      try { await api('/api/v1/users', { method: 'POST', body: f }); show('users'); } catch (e) { alert(e.message); }
    });
    main.replaceChildren(el('section', {}, el('h2', {}, t('users')), form,
      el('table', {}, el('thead', {}, el('tr', {}, ...['username', 'role', 'created'].map((k) => el('th', {}, t(k))))),
        el('tbody', {}, ...users.map((u) => el('tr', { class: u.disabled_at ? 'muted' : '' }, el('td', {}, u.name), el('td', {}, u.role), el('td', {}, fmt(u.created_at))))))));
  },

  async audit(main) {
    const page = await api('/api/v1/audit?limit=200');
    main.replaceChildren(el('section', {}, el('h2', {}, t('audit')),
      el('table', { id: 'audit' }, el('thead', {}, el('tr', {}, ...['time', 'who', 'action', 'target', 'address'].map((k) => el('th', {}, t(k))))),
        el('tbody', {}, ...page.items.map((a) => el('tr', {}, el('td', {}, fmt(a.at)), el('td', {}, a.actor || t('none')),
          el('td', {}, a.action), el('td', {}, a.target || t('none')), el('td', {}, a.address || t('none'))))))));
  },
};

function signOut() {
  if (es) { es.close(); es = null; }
  token = null; me = null; sessionStorage.removeItem('varta.token');
  location.reload();
}

async function start() {
  translate();
  $('#lang').addEventListener('click', () => { lang = lang === 'uk' ? 'en' : 'uk'; localStorage.setItem('varta.lang', lang); translate(); if (me) show(view); });
  $('#logout').addEventListener('click', async () => { try { await api('/api/v1/auth/logout', { method: 'POST' }); } catch (_) { /* gone anyway */ } signOut(); });
  $('#login').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    $('#login-error').textContent = '';
    try {
      const s = await api('/api/v1/auth/login', { method: 'POST', body: { username: $('#username').value, password: $('#password').value } });
      token = s.token; sessionStorage.setItem('varta.token', token);
      me = { name: s.name, role: s.role };
      show(VIEWS[me.role][0]);
    } catch (e) { $('#login-error').textContent = e.status === 429 ? t('throttled') : t('bad_login'); }
  });
  if (token) {
    try { me = await api('/api/v1/auth/me'); show(VIEWS[me.role][0]); } catch (_) { /* login form stays */ }
  }
}
start();
