//! The OpenAPI document, generated from the handlers' annotations (utoipa), so it
//! cannot drift from the code.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Varta API", description = "Control API of Varta: alerts, events, camera health, maintenance, administration."),
    paths(
        crate::session::login, crate::session::logout, crate::session::me,
        crate::session::list_users, crate::session::add_user, crate::session::disable_user,
        crate::session::change_user, crate::session::end_sessions,
        crate::cameras::list, crate::cameras::one, crate::cameras::restart,
        crate::reports::sites, crate::reports::uptime, crate::reports::uptime_daily,
        crate::reports::node_history, crate::reports::camera_history, crate::reports::nodes, crate::reports::bench_runs,
        crate::reports::audit,
        crate::events::list, crate::events::one, crate::events::snapshot, crate::events::clip, crate::events::export,
        crate::plates::search, crate::plates::track, crate::plates::crop,
        crate::plates::watchlist, crate::plates::add, crate::plates::remove,
        crate::alerts::list, crate::alerts::stream, crate::alerts::ack,
        crate::tasks::list, crate::tasks::create, crate::tasks::change, crate::tasks::one, crate::tasks::assignees,
        crate::reports::windows, crate::reports::add_window,
        crate::reload,
    ),
    modifiers(&Bearer),
)]
struct Doc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let c = api.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as a value.
pub fn spec() -> utoipa::openapi::OpenApi {
    let mut d = Doc::openapi();
    d.info.version = env!("CARGO_PKG_VERSION").to_owned();
    d
}

/// `GET /api/v1/openapi.json`.
pub async fn document() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(spec())
}
