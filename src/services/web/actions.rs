//! The teacher's actions (`POST /api/v1/teacher/...`, each behind the
//! token: [`teacher`](super::teacher)): kick, mute and rename a chat client,
//! say a line to the room, block and unblock an address; and what they
//! leave, for everyone (`GET /api/v1/teacher`, and the page's snapshot):
//! the blocks with their time left and the recent actions.
//!
//! The chat actions go through the room's [`Moderator`], which the chat
//! sets while it runs. A block refuses the address at every TCP service's
//! gate ([`block`](crate::services::shared::block)) and also removes its
//! chat clients (a runaway loop's open connections); its JSON echo
//! connections end with their exchange, and the web page stays open to it.
//! Every action is logged (who: the teacher's address; what; whom), kept
//! among the recent ones and written to the room's transcript; the token
//! never is. Today's transcript is the teacher's to download.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State as Extract;
use axum::extract::rejection::JsonRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::info;

use super::api::{State, fresh, problem};
use super::teacher::Teacher;
use super::views::{Class, seconds, time_text};
use crate::net::source_of;
use crate::observe::{ConnView, Moderator};
use crate::services::shared::block::time_left;

/// The longest mute: a lesson, not a term.
const MUTE_MAX: u64 = 24 * 3600;
/// The longest block.
const BLOCK_MAX: u64 = 7 * 24 * 3600;
/// The longest line the teacher says, in characters.
const SAY_MAX: usize = 500;
/// The longest name given, in bytes (the chat's own rules apply then).
const NAME_MAX: usize = 64;

type Answer = Result<Response, Response>;

/// A body, or the API's words for what is wrong with it.
fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, Response> {
    body.map(|Json(value)| value)
        .map_err(|rejection| problem(rejection.status(), rejection.body_text()))
}

fn bad(message: impl Into<String>) -> Response {
    problem(StatusCode::BAD_REQUEST, message.into())
}

/// The room's moderator, or 503 while the chat does not run.
fn moderator(state: &State) -> Result<Arc<dyn Moderator>, Response> {
    let moderator = state.observatory.window("chat").moderator();
    moderator.ok_or_else(|| {
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "the chat is not running".into(),
        )
    })
}

/// The chat client numbered `id`, or 404.
fn member(state: &State, id: u64) -> Result<ConnView, Response> {
    let open = state.observatory.window("chat").open();
    (open.into_iter().find(|c| c.id == id))
        .ok_or_else(|| problem(StatusCode::NOT_FOUND, format!("no chat client {id}")))
}

/// `alice (127.0.0.1:50312)`.
fn whom(member: &ConnView) -> String {
    let name = member.name.as_deref().unwrap_or("?");
    format!("{name} ({})", member.addr)
}

/// What the moderator could not do, in its words.
fn refused(why: String) -> Response {
    problem(StatusCode::CONFLICT, why)
}

/// Logs and keeps the action; the answer that says it was done.
fn done(state: &State, teacher: &Teacher, what: &'static str, whom: String) -> Answer {
    info!(teacher = %teacher.addr, action = what, whom = %whom, "teacher action");
    let chat = state.observatory.window("chat");
    chat.transcript
        .teacher(teacher.peer, &format!("{what} {whom}"));
    state
        .observatory
        .teacher()
        .acted(teacher.addr, what, whom.clone());
    Ok(fresh(json!({ "ok": true, "action": what, "whom": whom })))
}

/// `POST /api/v1/teacher/signin`: whether the token is right (the
/// extractor answers when it is not).
pub async fn sign_in(_teacher: Teacher) -> Response {
    fresh(json!({ "ok": true }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Client {
    id: u64,
}

pub async fn kick(
    teacher: Teacher,
    Extract(state): Extract<State>,
    request: Result<Json<Client>, JsonRejection>,
) -> Answer {
    let Client { id } = body(request)?;
    let moderator = moderator(&state)?;
    let member = member(&state, id)?;
    moderator.kick(id).map_err(refused)?;
    done(&state, &teacher, "kick", whom(&member))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mute {
    id: u64,
    seconds: u64,
}

pub async fn mute(
    teacher: Teacher,
    Extract(state): Extract<State>,
    request: Result<Json<Mute>, JsonRejection>,
) -> Answer {
    let Mute { id, seconds } = body(request)?;
    if seconds > MUTE_MAX {
        return Err(bad(format!("seconds must be 0 (to lift) to {MUTE_MAX}")));
    }
    let moderator = moderator(&state)?;
    let member = member(&state, id)?;
    let time = Duration::from_secs(seconds);
    moderator.mute(id, time).map_err(refused)?;
    state.observatory.teacher().muted(id, time);
    if seconds == 0 {
        return done(&state, &teacher, "unmute", whom(&member));
    }
    let whom = format!("{} for {}", whom(&member), for_time(time));
    done(&state, &teacher, "mute", whom)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    id: u64,
    name: String,
}

pub async fn rename(
    teacher: Teacher,
    Extract(state): Extract<State>,
    request: Result<Json<Rename>, JsonRejection>,
) -> Answer {
    let Rename { id, name } = body(request)?;
    if name.is_empty() || name.len() > NAME_MAX {
        return Err(bad(format!("name must be 1 to {NAME_MAX} bytes")));
    }
    let moderator = moderator(&state)?;
    let member = member(&state, id)?;
    let old = moderator.rename(id, &name).map_err(refused)?;
    let whom = format!("{old} ({}) to {name}", member.addr);
    done(&state, &teacher, "rename", whom)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Say {
    text: String,
}

pub async fn say(
    teacher: Teacher,
    Extract(state): Extract<State>,
    request: Result<Json<Say>, JsonRejection>,
) -> Answer {
    let Say { text } = body(request)?;
    let text = text.trim();
    let one_line = !text.chars().any(char::is_control);
    if text.is_empty() || text.chars().count() > SAY_MAX || !one_line {
        return Err(bad(format!(
            "text must be one line of 1 to {SAY_MAX} characters, without control characters"
        )));
    }
    let moderator = moderator(&state)?;
    moderator.say(text).map_err(refused)?;
    done(&state, &teacher, "say", text.to_owned())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Block {
    addr: String,
    seconds: u64,
}

/// An address as the API takes it: an IP address, no port (an IPv6 one
/// may say `/64`, as the block list shows it).
fn address(text: &str) -> Result<IpAddr, Response> {
    let text = text.trim();
    let ip: IpAddr = (text.strip_suffix("/64").unwrap_or(text).parse())
        .ok()
        .filter(|ip: &IpAddr| ip.is_ipv6() || !text.ends_with("/64"))
        .ok_or_else(|| bad(format!("{text:?} is not an IP address (127.0.0.1, ::1)")))?;
    Ok(ip.to_canonical())
}

/// A blocked source as the page and the log say it: an IPv4 address, or
/// an IPv6 /64 (`2001:db8:1:2::/64`).
fn source_text(ip: IpAddr) -> String {
    match source_of(ip) {
        IpAddr::V6(prefix) => format!("{prefix}/64"),
        v4 => v4.to_string(),
    }
}

pub async fn block(
    teacher: Teacher,
    Extract(state): Extract<State>,
    request: Result<Json<Block>, JsonRejection>,
) -> Answer {
    let Block { addr, seconds } = body(request)?;
    let ip = address(&addr)?;
    if !(1..=BLOCK_MAX).contains(&seconds) {
        return Err(bad(format!(
            "seconds must be 1 to {BLOCK_MAX} (unblock lifts a block)"
        )));
    }
    let time = Duration::from_secs(seconds);
    let teachers = state.observatory.teacher();
    teachers
        .block(ip, time)
        .map_err(|why| problem(StatusCode::INSUFFICIENT_STORAGE, why))?;
    let removed = remove_chat_clients(&state, ip);
    let mut whom = format!("{} for {}", source_text(ip), for_time(time));
    if removed > 0 {
        let plural = if removed == 1 { "" } else { "s" };
        whom.push_str(&format!(" ({removed} chat client{plural} removed)"));
    }
    done(&state, &teacher, "block", whom)
}

/// Kicks every chat client of `ip`, when the chat runs; how many.
fn remove_chat_clients(state: &State, ip: IpAddr) -> usize {
    let Ok(moderator) = moderator(state) else {
        return 0;
    };
    let open = state.observatory.window("chat").open();
    (open.iter())
        .filter(|c| source_of(c.addr.ip()) == source_of(ip))
        .filter(|c| moderator.kick(c.id).is_ok())
        .count()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unblock {
    addr: String,
}

pub async fn unblock(
    teacher: Teacher,
    Extract(state): Extract<State>,
    request: Result<Json<Unblock>, JsonRejection>,
) -> Answer {
    let Unblock { addr } = body(request)?;
    let ip = address(&addr)?;
    if !state.observatory.teacher().unblock(ip) {
        return Err(problem(
            StatusCode::NOT_FOUND,
            format!("{} is not blocked", source_text(ip)),
        ));
    }
    done(&state, &teacher, "unblock", source_text(ip))
}

/// `5 minutes`, `30 seconds`: a time as the log and the page say it.
fn for_time(time: Duration) -> String {
    time_left(time).replace(" more ", " ")
}

#[derive(Serialize)]
pub struct BlockJson {
    addr: String,
    since: f64,
    since_text: String,
    left_seconds: u64,
    left_text: String,
}

#[derive(Serialize)]
pub struct ActionJson {
    at: f64,
    at_text: String,
    by: String,
    what: &'static str,
    whom: String,
}

/// The teacher's side of the class: whether a token is set (the page
/// offers the sign-in then), the blocks and the recent actions.
pub fn teacher_view(state: &Class, enabled: bool) -> serde_json::Value {
    let teacher = state.observatory.teacher();
    let blocks: Vec<BlockJson> = (teacher.blocks().iter())
        .map(|b| BlockJson {
            addr: source_text(b.addr),
            since: seconds(b.since),
            since_text: time_text(b.since),
            left_seconds: b.left().as_secs_f64().ceil() as u64,
            left_text: time_left(b.left()),
        })
        .collect();
    let actions: Vec<ActionJson> = (teacher.actions().into_iter())
        .map(|a| ActionJson {
            at: seconds(a.at),
            at_text: time_text(a.at),
            by: a.by.to_string(),
            what: a.what,
            whom: a.whom,
        })
        .collect();
    let transcript = !state.observatory.config().chat.transcript.is_empty();
    json!({ "enabled": enabled, "transcript": transcript, "blocks": blocks, "actions": actions })
}

/// The largest transcript the page hands out: a day of a busy room is a
/// few megabytes; a bigger file is for `scp`, not a browser.
const TRANSCRIPT_MAX: u64 = 64 << 20;

/// `GET /api/v1/teacher/transcript`: today's transcript of the room, for
/// the teacher only (it names every student's address).
pub async fn transcript(teacher: Teacher, Extract(state): Extract<State>) -> Answer {
    let dir = state.observatory.config().chat.transcript.clone();
    if dir.is_empty() {
        let why = "the room keeps no transcript ([chat] transcript is unset)";
        return Err(problem(StatusCode::NOT_FOUND, why.into()));
    }
    let file = crate::observe::transcript::today(std::path::Path::new(&dir));
    let name = (file.file_name()).map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let size = match tokio::fs::metadata(&file).await {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(problem(
                StatusCode::NOT_FOUND,
                "nothing written today yet".into(),
            ));
        }
        Err(e) => return Err(unreadable(&file, &e)),
    };
    if size > TRANSCRIPT_MAX {
        let why = format!(
            "today's transcript ({name}) is over {} MiB: copy it from the Pi",
            TRANSCRIPT_MAX >> 20
        );
        return Err(problem(StatusCode::PAYLOAD_TOO_LARGE, why));
    }
    let text = tokio::fs::read(&file)
        .await
        .map_err(|e| unreadable(&file, &e))?;
    info!(teacher = %teacher.addr, file = %file.display(), "transcript downloaded");
    let headers = [
        (
            header::CONTENT_TYPE,
            "text/tab-separated-values; charset=utf-8".to_owned(),
        ),
        (
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ),
        (header::CACHE_CONTROL, "no-store".to_owned()),
    ];
    Ok((headers, text).into_response())
}

/// A transcript that is there but cannot be read: logged, and said.
fn unreadable(file: &std::path::Path, e: &std::io::Error) -> Response {
    tracing::warn!(file = %file.display(), error = %e, "cannot read the transcript");
    problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("cannot read today's transcript: {e}"),
    )
}

/// `GET /api/v1/teacher`: the blocks and recent actions, for everyone.
pub async fn view(Extract(state): Extract<State>) -> Response {
    let enabled = state.settings.borrow().admin_token.is_set();
    fresh(teacher_view(&state, enabled))
}
