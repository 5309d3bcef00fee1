//! The nightly forecast, live (SPEC §9): at `[controller.forecast] at` local time the
//! controller reads the last `window_days` of its own event log, turns it into demand exactly
//! as `conductor export` writes the dataset, and makes the forecast the twin would make on
//! that dataset at that instant — the same functions (wanted intervals with the idle timeout,
//! peak RAM per 15 minutes, the configured model), so the predictive policy is given the same
//! numbers in both.
//!
//! The stored document has one series, `ram_mib.peak`, in whole MiB: what the scheduler is
//! given, so a restart (or a standby taking over) hands it exactly the same forecast. A
//! document uploaded through the API is used when it has that series.

use crate::export::{self, ServerRow};
use crate::store::{Event, NewEvent, Store, StoreError};
use chrono_tz::Tz;
use conductor_config::ForecastSource;
use conductor_core::policy::DemandForecast;
use conductor_core::time::{DAY, HOUR};
use conductor_core::Millis;
use conductor_forecast::document::{FittedOn, Point, SeriesForecast, SCHEMA};
use conductor_forecast::nightly::{nightly_runs_at, peak_demand, predict, to_mib, STEP};
use conductor_forecast::timefmt::{format_rfc3339, parse_rfc3339};
use conductor_forecast::ForecastDocument;
use serde_json::json;

/// The one series the scheduler reads.
pub const SERIES: &str = "ram_mib.peak";

/// The event kinds the demand history is read from (what `export` reads sessions from).
pub const KINDS: &[&str] =
    &["server.created", "server.requested", "server.stop-requested", "server.idle", "server.abandoned", "server.slept"];

/// How far before the window the log is read, so that a session running into it keeps its
/// real start.
const LEAD_IN: Millis = DAY;

/// When and how the nightly forecast is made (`[controller.forecast]` with the scenario's
/// forecast source).
#[derive(Clone, Debug, PartialEq)]
pub struct ForecastSetup {
    pub source: ForecastSource,
    pub timezone: Tz,
    /// Local time of the nightly run (hour, minute).
    pub at: (u32, u32),
    /// History the models are fitted on.
    pub window: Millis,
    /// A forecast older than this is not used (predictive goes neutral).
    pub max_age: Millis,
    /// The lifecycle's idle timeout (a pay-per-use session wants its server this much longer).
    pub idle_timeout: Millis,
    /// How long after a failed run the next attempt is made.
    pub retry_after: Millis,
}

impl ForecastSetup {
    /// The latest scheduled run at or before `now`.
    pub fn last_run(&self, now: Millis) -> Option<Millis> {
        nightly_runs_at(self.timezone, self.at, now - 2 * DAY, now + 1).last().copied()
    }

    /// Whether a run is due at `now` when the newest stored forecast was made at `made`.
    pub fn due(&self, made: Option<Millis>, now: Millis) -> bool {
        self.last_run(now).is_some_and(|run| made.is_none_or(|m| m < run))
    }
}

/// A forecast made from the event log.
#[derive(Clone, Debug)]
pub struct Made {
    pub document: ForecastDocument,
    pub demand: DemandForecast,
    pub servers: usize,
    pub sessions: usize,
}

/// Makes the forecast at `now` from the listed servers and the events (oldest first) of
/// the window: the twin's forecast on the exported dataset of `[now − window, now)`, with
/// `now` taken down to the 15-minute grid (and the window no earlier than the fleet).
pub fn make(setup: &ForecastSetup, listed: &[ServerRow], events: &[Event], now: Millis) -> Result<Made, String> {
    let until = now - now.rem_euclid(STEP);
    // No history before the fleet's first server or event: a young fleet's forecast waits
    // until it has the season its model needs, rather than reading the time before as idle.
    let first = listed.iter().map(|s| s.created_at).chain(events.first().map(|e| e.at)).min().unwrap_or(until);
    let since = (until - setup.window).max(first + (STEP - first.rem_euclid(STEP)) % STEP);
    let meta = export::MetaInfo { name: "forecast".into(), timezone: setup.timezone.name().into(), source: "".into() };
    let exported = export::build(listed, events, since, until, &meta).map_err(|e| e.to_string())?;
    let dataset = dataset(&exported, setup.timezone, since, until)?;
    let intervals = conductor_config::dataset::wanted_intervals(&dataset, setup.idle_timeout);
    let ram: Vec<u32> = dataset.servers.iter().map(|s| s.ram_mib).collect();
    let peaks = peak_demand(intervals.iter().map(|iv| (iv.server, iv.start, iv.end)), &ram, since, until);
    let (origin, p, model) = predict(&setup.source, &peaks, since, until)?;
    let demand = DemandForecast {
        start: origin,
        step: STEP,
        mean: to_mib(&p.mean),
        p90: to_mib(&p.hi80),
        p97_5: to_mib(&p.hi95),
        source: model,
    };
    let document = document(&demand, (&to_mib(&p.lo80), &to_mib(&p.lo95)), now, since);
    Ok(Made { document, demand, servers: dataset.servers.len(), sessions: exported.sessions.len() })
}

/// The document of the scheduler's forecast `demand` made at `now` from history since
/// `since`, with the lower bounds of its intervals (whole MiB).
pub fn document(
    demand: &DemandForecast,
    (lo80, lo95): (&[u64], &[u64]),
    now: Millis,
    since: Millis,
) -> ForecastDocument {
    let origin = demand.start;
    let points = (0..demand.mean.len())
        .map(|i| Point {
            t: format_rfc3339(origin + STEP * i as Millis),
            mean: demand.mean[i] as f64,
            lo80: lo80.get(i).copied().unwrap_or(0) as f64,
            hi80: demand.p90[i] as f64,
            lo95: lo95.get(i).copied().unwrap_or(0) as f64,
            hi95: demand.p97_5[i] as f64,
        })
        .collect();
    ForecastDocument {
        schema: SCHEMA.into(),
        made_at: format_rfc3339(now),
        origin: format_rfc3339(origin),
        step_s: STEP / 1000,
        horizon_steps: demand.mean.len(),
        series: vec![SeriesForecast {
            name: SERIES.into(),
            unit: "MiB".into(),
            model: demand.source.clone(),
            fitted_on: FittedOn {
                start: format_rfc3339(since),
                end: format_rfc3339(origin),
                steps: ((origin - since).max(0) / STEP) as usize,
            },
            backtest: None,
            points,
        }],
    }
}

/// The scheduler's forecast in a document: its `ram_mib.peak` series (mean, upper 80 % and
/// 95 % bounds), or why it has none.
pub fn demand_of(doc: &ForecastDocument) -> Result<DemandForecast, String> {
    let s = doc.series(SERIES).ok_or_else(|| {
        let names: Vec<&str> = doc.series.iter().map(|s| s.name.as_str()).collect();
        format!("no {SERIES} series (has {}): the scheduler forecasts peak RAM in MiB", names.join(", "))
    })?;
    if doc.step_s * 1000 != STEP {
        return Err(format!("step_s {} (the scheduler's forecast step is {} s)", doc.step_s, STEP / 1000));
    }
    let start = parse_rfc3339(&doc.origin)?;
    let mib = |f: fn(&Point) -> f64| to_mib(&s.points.iter().map(f).collect::<Vec<_>>());
    Ok(DemandForecast {
        start,
        step: STEP,
        mean: mib(|p| p.mean),
        p90: mib(|p| p.hi80),
        p97_5: mib(|p| p.hi95),
        source: s.model.clone(),
    })
}

/// The exported rows as the twin's in-memory dataset.
fn dataset(
    e: &export::Export,
    timezone: Tz,
    start: Millis,
    end: Millis,
) -> Result<conductor_config::dataset::Dataset, String> {
    use conductor_config::dataset::{Dataset, Meta, Server, Session};
    let mut owners: Vec<String> = Vec::new();
    let mut index = std::collections::HashMap::new();
    let mut servers = Vec::with_capacity(e.servers.len());
    for (i, s) in e.servers.iter().enumerate() {
        let owner = format!("o{}", s.owner);
        let o = owners.iter().position(|x| *x == owner).unwrap_or_else(|| {
            owners.push(owner);
            owners.len() - 1
        });
        index.insert(s.id, i as u32);
        servers.push(Server {
            id: format!("s{}", s.id),
            owner: o as u32,
            ram_mib: s.ram_mib,
            disk_mb: s.disk_mb,
            cpu_cores: None,
            pay_per_use: s.pay_per_use,
            cost_mode: crate::store::parse_cost_mode(&s.cost_mode).map_err(|e| e.to_string())?,
            created_at: s.created_at,
        });
    }
    let sessions = e
        .sessions
        .iter()
        .map(|s| Session { server: index[&s.server], start: s.start, end: s.end, players: s.players })
        .collect();
    let meta = Meta {
        name: "forecast".into(),
        timezone,
        start,
        end,
        source: "event log".into(),
        license: String::new(),
        notes: String::new(),
    };
    Ok(Dataset { dir: Default::default(), meta, servers, owners, sessions })
}

/// Reads the window's servers and events from the store.
pub async fn history<S: Store>(
    store: &S,
    setup: &ForecastSetup,
    now: Millis,
) -> Result<(Vec<ServerRow>, Vec<Event>), StoreError> {
    let listed: Vec<ServerRow> = store.servers(None).await?.iter().map(ServerRow::from).collect();
    let since = now - now.rem_euclid(STEP) - setup.window - LEAD_IN;
    let mut events: Vec<Event> = Vec::new();
    loop {
        let after = events.last().map_or(0, |e| e.seq);
        let page = store.events_of(KINDS, since, after, 10_000).await?;
        if page.is_empty() {
            return Ok((listed, events));
        }
        events.extend(page);
    }
}

/// Why a run did not produce a forecast.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Forecast(String),
}

/// The nightly job once: reads the history, makes the forecast (off the async threads: a
/// model fit takes CPU), stores the document and records `forecast.made`; a failure is
/// recorded as `forecast.failed` and returned.
pub async fn run<S: Store>(store: &S, setup: &ForecastSetup, now: Millis) -> Result<Made, RunError> {
    let started = std::time::Instant::now();
    let made = match history(store, setup, now).await {
        Ok((listed, events)) => {
            let s = setup.clone();
            tokio::task::spawn_blocking(move || make(&s, &listed, &events, now))
                .await
                .unwrap_or_else(|e| Err(format!("the forecast job panicked: {e}")))
        }
        Err(e) => Err(e.to_string()),
    };
    let made = match made {
        Ok(made) => made,
        Err(error) => {
            let data = json!({ "error": error, "source": source_name(&setup.source) });
            store
                .append_event(NewEvent {
                    at: now,
                    kind: crate::events::FORECAST_FAILED.into(),
                    server: None,
                    node: None,
                    data,
                })
                .await?;
            return Err(RunError::Forecast(error));
        }
    };
    let doc = serde_json::to_value(&made.document).expect("a forecast serializes");
    let id = store.save_forecast(doc, now).await?;
    let data = json!({
        "forecast": id,
        "model": made.demand.source,
        "origin": made.document.origin,
        "history_from": made.document.series[0].fitted_on.start,
        "servers": made.servers,
        "sessions": made.sessions,
        "peak_mib": made.demand.p90.iter().max().copied().unwrap_or(0),
        "took_ms": started.elapsed().as_millis() as u64,
    });
    store
        .append_event(NewEvent { at: now, kind: crate::events::FORECAST_MADE.into(), server: None, node: None, data })
        .await?;
    Ok(made)
}

fn source_name(s: &ForecastSource) -> String {
    match s {
        ForecastSource::Perfect => "perfect".into(),
        ForecastSource::SeasonalNaive => "seasonal-naive".into(),
        ForecastSource::Model(spec) => spec.label(),
    }
}

/// The daemon's side of the job, called after every step: runs the job when due (once per
/// `retry_after` after a failure) and hands the newest stored forecast — made here, by
/// `conductor forecast --from-db`, or uploaded — to the engine when it is new.
pub async fn step<S: Store + 'static>(
    store: &S,
    live: &tokio::sync::Mutex<crate::live::Live<S>>,
    setup: &ForecastSetup,
    last_failure: &mut Option<Millis>,
    now: Millis,
) -> Result<(), RunError> {
    let mut latest = store.latest_forecast().await?;
    let retry = last_failure.is_none_or(|t| now - t >= setup.retry_after);
    if setup.due(latest.as_ref().map(|(at, _)| *at), now) && retry {
        match run(store, setup, now).await {
            Ok(_) => {
                *last_failure = None;
                // What was just stored (the store's own made_at and document).
                latest = store.latest_forecast().await?;
            }
            Err(RunError::Forecast(_)) => {
                *last_failure = Some(now);
                live.lock().await.forecast_failed();
            }
            Err(e) => return Err(e),
        }
    }
    if let Some((made_at, doc)) = latest {
        let mut live = live.lock().await;
        if live.forecast_made_at() != Some(made_at) {
            live.use_forecast(made_at, &doc, now).await.map_err(|e| RunError::Forecast(e.to_string()))?;
        }
    }
    Ok(())
}

/// Default age past which a forecast is not used: a missed night plus some slack.
pub const DEFAULT_MAX_AGE: Millis = 30 * HOUR;
