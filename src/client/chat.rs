//! `pinetd chat HOST PORT [--name NAME]`: a chat client. Lines typed (or
//! piped) go to the hub; what the hub sends is printed as it arrives, while
//! you type. `bye` leaves; the end of stdin leaves too, once the hub has
//! answered.

use std::io::{self, Write};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum ChatClientError {
    #[error("cannot connect to {target}: {source}")]
    Connect { target: String, source: io::Error },
    #[error("connection lost: {0}")]
    Io(#[from] io::Error),
}

pub async fn main(host: &str, port: u16, name: Option<String>) -> Result<(), ChatClientError> {
    let target = format!("{host}:{port}");
    let addr = super::resolve(host, port)
        .await
        .map_err(|source| ChatClientError::Connect {
            target: target.clone(),
            source,
        })?;
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| ChatClientError::Connect { target, source })?;
    let (mut from_hub, mut to_hub) = stream.into_split();
    if let Some(name) = name {
        to_hub
            .write_all(format!("/nick {name}\n").as_bytes())
            .await?;
    }
    let typing = tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Some(line) = lines.next_line().await? {
            to_hub.write_all(format!("{line}\n").as_bytes()).await?;
            if matches!(line.trim(), "bye" | "/quit") {
                // The hub answers and closes; keep printing until it does.
                return Ok(());
            }
        }
        // End of stdin: leave, once the hub has answered what was sent.
        to_hub.shutdown().await
    });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from_hub.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let mut out = io::stdout().lock();
        out.write_all(&buf[..n])?;
        out.flush()?;
    }
    typing.abort();
    eprintln!("*** connection closed");
    Ok(())
}
