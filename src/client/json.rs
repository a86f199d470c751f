//! `pinetd json HOST PORT`: JSON values from stdin (one per line, or any
//! stream) to the JSON echo, each reply printed on its own line; or, with
//! `--count N`, the course's demo object N times, one exchange at a time.

use std::io;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Why `pinetd json` failed, in words for the user.
#[derive(Debug, thiserror::Error)]
pub enum JsonClientError {
    #[error("cannot connect to {target}: {source}")]
    Connect { target: String, source: io::Error },
    #[error("connection lost: {0}")]
    Io(#[from] io::Error),
    #[error("the server refused the input: {0}")]
    Refused(String),
    #[error("the server closed the connection before answering")]
    Closed,
}

/// The course's demo object, as its client's `json.dumps` writes it.
fn demo(count: u32) -> String {
    format!("{{\"name\": \"jung\", \"count\": {count}}}")
}

pub async fn main(host: &str, port: u16, count: Option<u32>) -> Result<(), JsonClientError> {
    let target = format!("{host}:{port}");
    let addr = super::resolve(host, port)
        .await
        .map_err(|source| JsonClientError::Connect {
            target: target.clone(),
            source,
        })?;
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| JsonClientError::Connect { target, source })?;
    let (read, mut write) = stream.into_split();
    let mut replies = BufReader::new(read).lines();
    match count {
        Some(n) => {
            for i in 1..=n {
                write.write_all(demo(i).as_bytes()).await?;
                let reply = replies.next_line().await?.ok_or(JsonClientError::Closed)?;
                print_reply(&reply)?;
            }
        }
        None => {
            // Stdin goes up while replies come down; at its end, our side closes
            // and the server answers what is left, then closes too.
            let upload = tokio::spawn(async move {
                tokio::io::copy(&mut tokio::io::stdin(), &mut write).await?;
                write.shutdown().await
            });
            while let Some(reply) = replies.next_line().await? {
                print_reply(&reply)?;
            }
            match upload.await {
                Ok(Err(e)) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e.into()),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Prints a reply; an error object ends the run with its message.
fn print_reply(reply: &str) -> Result<(), JsonClientError> {
    println!("{reply}");
    let Ok(serde_json::Value::Object(object)) = serde_json::from_str::<serde_json::Value>(reply)
    else {
        return Ok(());
    };
    let Some(error) = object.get("error").and_then(|e| e.as_str()) else {
        return Ok(());
    };
    let at = match (object.get("line"), object.get("column")) {
        (Some(line), Some(column)) => format!(" (line {line}, column {column})"),
        _ => String::new(),
    };
    Err(JsonClientError::Refused(format!("{error}{at}")))
}
