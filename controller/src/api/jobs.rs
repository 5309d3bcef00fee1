//! Preemptible jobs: submit (an owner: an image the operator allows, at the configured
//! price; an admin: any image, for an owner, at a price of its choosing), list, show,
//! cancel. They run on idle dedicated capacity and yield to paying servers after a notice.

use super::{caller, live_error, no_engine, Api, ApiError, Body, Caller};
use crate::store::{Job, NewJob, Store};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use conductor_forecast::timefmt::format_rfc3339;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SubmitJob {
    image: String,
    #[serde(default)]
    cmd: Vec<String>,
    ram_mib: u32,
    max_duration_s: u64,
    /// Admin only (an owner's jobs are billed at the configured price).
    price_per_gib_hour: Option<String>,
    /// Admin only: whose job it is.
    owner: Option<i64>,
}

#[derive(Serialize)]
pub struct JobView {
    pub id: i64,
    pub owner: i64,
    pub image: String,
    pub cmd: Vec<String>,
    pub ram_mib: u32,
    pub max_duration_s: u64,
    pub price_per_gib_hour: String,
    pub state: crate::store::JobState,
    pub node: Option<i64>,
    /// RFC 3339 (UTC).
    pub created_at: String,
    pub started_at: Option<String>,
    pub kill_at: Option<String>,
    pub ended_at: Option<String>,
    pub outcome: Option<String>,
}

impl From<Job> for JobView {
    fn from(j: Job) -> JobView {
        JobView {
            id: j.id,
            owner: j.owner,
            image: j.image,
            cmd: j.cmd,
            ram_mib: j.ram_mib,
            max_duration_s: j.max_duration_s,
            price_per_gib_hour: j.price_per_gib_hour.to_string(),
            state: j.state,
            node: j.node,
            created_at: format_rfc3339(j.created_at),
            started_at: j.started_at.map(format_rfc3339),
            kill_at: j.kill_at.map(format_rfc3339),
            ended_at: j.ended_at.map(format_rfc3339),
            outcome: j.outcome,
        }
    }
}

pub(super) async fn submit<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Body(req): Body<SubmitJob>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let who = caller(&api, &headers).await?;
    let live = api.live.as_ref().ok_or_else(no_engine)?;
    let setup = live.lock().await.jobs_setup().clone();
    let (owner, price) = match who {
        Caller::Owner(o) => {
            if req.owner.is_some_and(|x| x != o) || req.price_per_gib_hour.is_some() {
                return Err(ApiError::forbidden("choosing a job's owner or price"));
            }
            if !setup.images.contains(&req.image) {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "image_not_allowed",
                    format!("image {:?}: jobs may run {}", req.image, setup.images.join(", ")),
                ));
            }
            (o, setup.price_per_gib_hour)
        }
        Caller::Admin => {
            let owner = req.owner.ok_or_else(|| ApiError::invalid("owner: required (whose job it is)"))?;
            let price = match &req.price_per_gib_hour {
                Some(p) => p
                    .parse::<crate::store::Money>()
                    .ok()
                    .filter(|p| !p.is_sign_negative())
                    .ok_or_else(|| ApiError::invalid("price_per_gib_hour: a non-negative decimal string"))?,
                None => setup.price_per_gib_hour,
            };
            (owner, price)
        }
    };
    if req.image.trim().is_empty() || req.image.len() > 255 {
        return Err(ApiError::invalid("image: 1 to 255 characters"));
    }
    if req.cmd.len() > 64 || req.cmd.iter().any(|a| a.len() > 4096) {
        return Err(ApiError::invalid("cmd: at most 64 arguments of 4096 characters"));
    }
    if req.ram_mib == 0 || req.ram_mib % 256 != 0 {
        return Err(ApiError::invalid("ram_mib: a positive multiple of 256"));
    }
    let longest = (setup.max_duration / 1000) as u64;
    if req.max_duration_s == 0 || req.max_duration_s > longest {
        return Err(ApiError::invalid(format!("max_duration_s: 1 to {longest}")));
    }
    let new = NewJob {
        owner,
        image: req.image,
        cmd: req.cmd,
        ram_mib: req.ram_mib,
        max_duration_s: req.max_duration_s,
        price_per_gib_hour: price,
    };
    let job = live.lock().await.submit_job((api.config.now)(), new).await.map_err(live_error)?;
    Ok((StatusCode::CREATED, Json(job.into())))
}

/// The caller's jobs (an admin: all), oldest first, as the engine has them now.
pub(super) async fn list<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
) -> Result<Json<Vec<JobView>>, ApiError> {
    let owner = match caller(&api, &headers).await? {
        Caller::Admin => None,
        Caller::Owner(o) => Some(o),
    };
    let rows = api.store.jobs(owner).await?;
    let live = match &api.live {
        Some(l) => Some(l.lock().await),
        None => None,
    };
    let fresh = |j: Job| live.as_ref().and_then(|l| l.job_row(j.id)).unwrap_or(j);
    Ok(Json(rows.into_iter().map(|j| fresh(j).into()).collect()))
}

async fn visible<S: Store + 'static>(api: &Api<S>, headers: &axum::http::HeaderMap, id: &str) -> Result<Job, ApiError> {
    let who = caller(api, headers).await?;
    let id: i64 = id.parse().map_err(|_| ApiError::not_found("job"))?;
    let job = api.store.job(id).await?;
    if matches!(who, Caller::Owner(o) if o != job.owner) {
        return Err(ApiError::not_found("job"));
    }
    let live_row = match &api.live {
        Some(l) => l.lock().await.job_row(id),
        None => None,
    };
    Ok(live_row.unwrap_or(job))
}

pub(super) async fn show<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(visible(&api, &headers, &id).await?.into()))
}

/// Cancels an open job (409 job_ended otherwise); a running one is killed and billed for
/// the time it ran.
pub(super) async fn cancel<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job = visible(&api, &headers, &id).await?;
    let by = match caller(&api, &headers).await? {
        Caller::Admin => "admin".to_owned(),
        Caller::Owner(o) => format!("owner:{o}"),
    };
    let live = api.live.as_ref().ok_or_else(no_engine)?;
    let ended = live.lock().await.cancel_job((api.config.now)(), job.id, &by).await.map_err(live_error)?;
    Ok(Json(ended.into()))
}
