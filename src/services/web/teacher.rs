//! Who may act as the teacher: a request to `/api/v1/teacher/...` that
//! changes anything carries the token of `[web] admin_token_file` in its
//! `Authorization: Bearer` header (never a cookie, which a page of another
//! site could make a browser send), from a page of this server if it comes
//! from a browser (`Origin`). A wrong or missing token is refused, counted
//! by reason for `/metrics` and logged (never with what was sent); after
//! [`FAILURES_A_MINUTE`](super::guard::FAILURES_A_MINUTE) from one address (an IPv6 /64), every request of it
//! is refused with 429 until its minute is over, the right token too, so a
//! guesser gets five tries a minute.

use std::net::IpAddr;
use std::time::Instant;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use tracing::{debug, warn};

use super::Peer;
use super::api::{State, problem};
use super::guard::same_origin;
use crate::net::source_of;
use crate::observe::teacher::Refused;

/// A request the teacher made: the token was right. Its source address.
pub struct Teacher {
    pub addr: IpAddr,
    /// With its port, for the transcript.
    pub peer: std::net::SocketAddr,
}

impl FromRequestParts<State> for Teacher {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Response> {
        let Some(peer) = parts.extensions.get::<Peer>() else {
            return Err(problem(StatusCode::INTERNAL_SERVER_ERROR, "no peer".into()));
        };
        let peer = peer.clone();
        let addr = peer.addr.ip().to_canonical();
        let token = state.settings.borrow().admin_token.clone();
        let refuse = |why: Refused, status: StatusCode, message: &str| {
            state.observatory.teacher().refuse(why);
            // A guess is worth a line, and there are five a minute at most
            // from one address; the others, which a script may repeat 50
            // times a second, are counted only.
            if matches!(why, Refused::Missing | Refused::Wrong) {
                warn!(peer = %addr, reason = why.key(), "teacher request refused");
            } else {
                debug!(peer = %addr, reason = why.key(), "teacher request refused");
            }
            problem(status, message.to_owned())
        };
        if !same_origin(&parts.headers) {
            let message = "teacher actions take pages of this server only (Origin)";
            return Err(refuse(Refused::CrossOrigin, StatusCode::FORBIDDEN, message));
        }
        if !token.is_set() {
            let message = "the page is read-only: no teacher token is set ([web] admin_token_file)";
            return Err(refuse(Refused::NoToken, StatusCode::FORBIDDEN, message));
        }
        let source = source_of(addr);
        let now = Instant::now();
        if let Some(wait) = state.failures.wait(source, now) {
            let message = "too many wrong tokens from your address, try again in a minute";
            let mut answer = refuse(Refused::RateLimited, StatusCode::TOO_MANY_REQUESTS, message);
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            answer
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.max(1).into());
            return Err(answer);
        }
        match bearer(&parts.headers) {
            Some(given) if token.matches(given) => Ok(Teacher {
                addr,
                peer: peer.addr,
            }),
            given => {
                state.failures.failed(source, now);
                let (why, message) = match given {
                    None => (
                        Refused::Missing,
                        "this needs the teacher's token (Authorization: Bearer ...)",
                    ),
                    Some(_) => (Refused::Wrong, "wrong token"),
                };
                Err(refuse(why, StatusCode::UNAUTHORIZED, message))
            }
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` header.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let scheme = value.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| value[7..].trim_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_token_is_read_from_its_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer abc ".parse().unwrap());
        assert_eq!(bearer(&headers), Some(&b"abc"[..]));
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }
}
