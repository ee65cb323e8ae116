//! The typed client: one [`Request`] in, one [`Reply`] (or a [`ClientError`]) out, over the
//! daemon's Unix socket. Routes come from [`crate::wire`], so callers never spell a URL.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use crate::types::{ApiError, Reply, Request};
use crate::wire;

/// Where vswitchd listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/vswitch/vswitchd.sock";

/// Why a call did not produce a [`Reply`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No socket file at `path` (`stale: false`), or a socket file nobody listens on
    /// (`stale: true`, connection refused).
    #[error("{}", not_running(path, *stale))]
    DaemonNotRunning {
        /// The socket path tried.
        path: PathBuf,
        /// The socket file exists but nothing accepts connections on it.
        stale: bool,
    },
    /// The socket exists but could not be connected to for another reason (e.g. permission
    /// denied: the socket is restricted to root or the daemon's group).
    #[error("cannot connect to vswitchd at {}: {source}", path.display())]
    Connect {
        /// The socket path tried.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The daemon refused the request; the message names the problem.
    #[error("{0}")]
    Api(ApiError),
    /// The conversation itself failed: the connection broke, the daemon did not answer in
    /// time, or the reply was not what the API defines.
    #[error("protocol error talking to vswitchd: {0}")]
    Protocol(String),
}

fn not_running(path: &Path, stale: bool) -> String {
    if stale {
        format!("vswitchd is not running (stale socket at {}, nothing listening)", path.display())
    } else {
        format!("vswitchd is not running (no socket at {})", path.display())
    }
}

/// An HTTP reply as received, for [`Client::raw`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// HTTP status code.
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The `Allow` header, if any (405 replies carry it).
    pub allow: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// A client of vswitchd's control API. Cheap to clone; each call opens its own connection.
#[derive(Debug, Clone)]
pub struct Client {
    path: PathBuf,
    timeout: Duration,
}

impl Client {
    /// A client of the daemon listening at `socket_path` (usually [`DEFAULT_SOCKET`]).
    pub fn new(socket_path: impl Into<PathBuf>) -> Client {
        Client { path: socket_path.into(), timeout: Duration::from_secs(30) }
    }

    /// Give up on a call (connect, send, whole reply) after `timeout` (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// The socket path this client connects to.
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// Send `request` and wait for its reply.
    pub async fn call(&self, request: Request) -> Result<Reply, ClientError> {
        let http = request.to_http();
        let raw = self.raw(http.method, &http.path_and_query, http.body).await?;
        if (200..300).contains(&raw.status) {
            return wire::decode_reply(&request, &raw.body).map_err(|e| {
                ClientError::Protocol(format!("unexpected reply to {}: {e}", request.route()))
            });
        }
        match wire::decode_error(&raw.body) {
            Some(error) => Err(ClientError::Api(error)),
            None => Err(ClientError::Protocol(format!(
                "HTTP {} from {} without an API error body: {:?}",
                raw.status,
                request.route(),
                String::from_utf8_lossy(&raw.body[..raw.body.len().min(200)])
            ))),
        }
    }

    /// [`Client::call`] for synchronous callers (the CLI, the CNI shim): runs it on a
    /// private single-threaded runtime. Must not be called from inside an async runtime.
    pub fn call_blocking(&self, request: Request) -> Result<Reply, ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Protocol(format!("cannot start the I/O runtime: {e}")))?;
        runtime.block_on(self.call(request))
    }

    /// Send any HTTP request over the socket and return the reply as is: an escape hatch for
    /// debugging and tests. `path_and_query` must already be percent-encoded.
    pub async fn raw(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, ClientError> {
        match tokio::time::timeout(self.timeout, self.raw_inner(method, path_and_query, body)).await
        {
            Ok(result) => result,
            Err(_) => Err(ClientError::Protocol(format!(
                "no reply from vswitchd within {:?} ({method} {path_and_query})",
                self.timeout
            ))),
        }
    }

    async fn raw_inner(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, ClientError> {
        let protocol = |what: &str, e: &dyn std::fmt::Display| {
            ClientError::Protocol(format!("{what} ({method} {path_and_query}): {e}"))
        };
        let stream = UnixStream::connect(&self.path).await.map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                ClientError::DaemonNotRunning { path: self.path.clone(), stale: false }
            }
            io::ErrorKind::ConnectionRefused => {
                ClientError::DaemonNotRunning { path: self.path.clone(), stale: true }
            }
            _ => ClientError::Connect { path: self.path.clone(), source: e },
        })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| protocol("HTTP handshake failed", &e))?;
        let driver = tokio::spawn(connection);

        let mut builder = hyper::Request::builder()
            .method(
                hyper::Method::from_bytes(method.as_bytes())
                    .map_err(|e| protocol("bad method", &e))?,
            )
            .uri(path_and_query)
            .header(HOST, "localhost");
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, wire::JSON);
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| protocol("cannot build the request", &e))?;
        let response =
            sender.send_request(request).await.map_err(|e| protocol("request failed", &e))?;
        let header = |name: hyper::header::HeaderName| {
            response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
        };
        let status = response.status().as_u16();
        let content_type = header(CONTENT_TYPE);
        let allow = header(hyper::header::ALLOW);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| protocol("reading the reply failed", &e))?
            .to_bytes()
            .to_vec();
        driver.abort();
        Ok(RawResponse { status, content_type, allow, body })
    }
}
