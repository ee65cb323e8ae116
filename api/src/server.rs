//! The HTTP server the daemon plugs its [`Backend`] into: the control API on a Unix socket,
//! and `GET /metrics` alone on a TCP address for Prometheus.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};

use crate::types::{ApiError, Request, Response};
use crate::wire::{self, RouteError};

/// How long in-flight requests may take to finish once shutdown is asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What answers API requests: the daemon implements it. A call may block briefly (it talks to
/// the control loop); the server runs it on tokio's blocking pool.
///
/// The reply must be the shape the request's route defines (see [`Request`]); another shape is
/// answered with a 500 naming the mismatch, as a bug in the daemon. A panic in `call` is
/// answered with a 500 too, and the server goes on.
///
/// Closures `Fn(Request) -> Response` implement it, which suits tests.
pub trait Backend: Send + Sync + 'static {
    /// Answer one request.
    fn call(&self, request: Request) -> Response;
}

impl<F> Backend for F
where
    F: Fn(Request) -> Response + Send + Sync + 'static,
{
    fn call(&self, request: Request) -> Response {
        self(request)
    }
}

/// The control socket, bound and with its permissions set, not yet serving. Binding apart from
/// serving lets the daemon fail early and report readiness once the socket exists.
///
/// Dropping it (or the end of [`ApiListener::serve`]) removes the socket file, if it is still
/// the one this listener created.
#[derive(Debug)]
pub struct ApiListener {
    listener: Option<std::os::unix::net::UnixListener>,
    path: PathBuf,
    /// (device, inode) of the socket file, to remove only our own.
    identity: (u64, u64),
}

fn other(kind: io::ErrorKind, message: String) -> io::Error {
    io::Error::new(kind, message)
}

fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    other(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Remove a socket file left by a daemon that is gone; refuse if one still listens there or
/// the path is something else.
fn clear_stale(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(with_path(e, "cannot inspect", path)),
    };
    if !meta.file_type().is_socket() {
        return Err(other(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket; not removing it", path.display()),
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(other(
            io::ErrorKind::AddrInUse,
            format!(
                "another process is serving on {} (is vswitchd already running?)",
                path.display()
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path)
            .map_err(|e| with_path(e, "cannot remove the stale socket", path)),
        Err(e) => Err(with_path(e, "cannot check the existing socket", path)),
    }
}

impl ApiListener {
    /// Bind the control socket at `path`: create its directory if missing, remove a stale
    /// socket left by a dead daemon (refusing if a live one answers there), then set the
    /// file's `mode` (e.g. `0o660`) and, if given, its group `group` (a gid; the owner stays
    /// root) before the socket appears at `path`, so it is never reachable with looser
    /// permissions. Connecting needs write permission on the socket file.
    pub fn bind(path: &Path, mode: u32, group: Option<u32>) -> io::Result<ApiListener> {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file_name = path.file_name().ok_or_else(|| {
            other(io::ErrorKind::InvalidInput, format!("{} is not a file path", path.display()))
        })?;
        std::fs::create_dir_all(&parent)
            .map_err(|e| with_path(e, "cannot create the socket directory", &parent))?;
        clear_stale(path)?;

        // Bind in a private directory, fix the permissions, then move the socket into place.
        let staging =
            parent.join(format!(".{}.{}.tmp", file_name.to_string_lossy(), std::process::id()));
        if staging.exists() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .map_err(|e| with_path(e, "cannot create", &staging))?;
        let result: io::Result<_> = (|| {
            let staged = staging.join("s");
            let listener = std::os::unix::net::UnixListener::bind(&staged)
                .map_err(|e| with_path(e, "cannot bind", &staged))?;
            std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode & 0o7777))
                .map_err(|e| with_path(e, "cannot set the mode of", &staged))?;
            if let Some(gid) = group {
                std::os::unix::fs::chown(&staged, None, Some(gid))
                    .map_err(|e| with_path(e, &format!("cannot give group {gid} to"), &staged))?;
            }
            std::fs::rename(&staged, path)
                .map_err(|e| with_path(e, "cannot move socket to", path))?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })();
        let _ = std::fs::remove_dir_all(&staging);
        let listener = result?;
        let meta = std::fs::symlink_metadata(path)?;
        Ok(ApiListener {
            listener: Some(listener),
            path: path.to_path_buf(),
            identity: (meta.dev(), meta.ino()),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serve the control API until `shutdown` resolves, then stop accepting, let in-flight
    /// requests finish (up to 5 s) and remove the socket file. Must run inside a tokio runtime.
    pub async fn serve(
        mut self,
        backend: Arc<dyn Backend>,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let std_listener = self.listener.take().expect("listener present until served");
        let listener = UnixListener::from_std(std_listener)?;
        tracing::info!(socket = %self.path.display(), "control API listening");
        serve_loop(Listener::Unix(listener), backend, false, shutdown).await
        // `self` drops here and removes the socket file.
    }
}

impl Drop for ApiListener {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.identity {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Serve the control API on the Unix socket `path` until `shutdown` resolves: see
/// [`ApiListener::bind`] (stale socket, `mode`, `group`) and [`ApiListener::serve`].
pub async fn serve_unix(
    path: &Path,
    mode: u32,
    group: Option<u32>,
    backend: Arc<dyn Backend>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    ApiListener::bind(path, mode, group)?.serve(backend, shutdown).await
}

/// Serve only `GET /metrics` ([`Request::Metrics`]) on the TCP address `addr`, for Prometheus,
/// until `shutdown` resolves. The daemon chooses the address (loopback by default).
pub async fn serve_metrics_tcp(
    addr: SocketAddr,
    backend: Arc<dyn Backend>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| other(e.kind(), format!("cannot listen on {addr} for metrics: {e}")))?;
    serve_metrics(listener, backend, shutdown).await
}

/// [`serve_metrics_tcp`] on a listener already bound (e.g. to port 0 in tests).
pub async fn serve_metrics(
    listener: TcpListener,
    backend: Arc<dyn Backend>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics listening");
    }
    serve_loop(Listener::Tcp(listener), backend, true, shutdown).await
}

enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

async fn serve_loop(
    listener: Listener,
    backend: Arc<dyn Backend>,
    metrics_only: bool,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener) => accepted,
        };
        match accepted {
            Ok(Stream::Unix(stream)) => spawn_connection(stream, &backend, metrics_only, &graceful),
            Ok(Stream::Tcp(stream)) => spawn_connection(stream, &backend, metrics_only, &graceful),
            Err(e) if is_transient(&e) => {}
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accepting a control connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("API requests still running after {DRAIN_TIMEOUT:?}; closing anyway");
        }
    }
    Ok(())
}

enum Stream {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

async fn accept(listener: &Listener) -> io::Result<Stream> {
    match listener {
        Listener::Unix(l) => l.accept().await.map(|(s, _)| Stream::Unix(s)),
        Listener::Tcp(l) => l.accept().await.map(|(s, _)| Stream::Tcp(s)),
    }
}

fn spawn_connection<S>(
    stream: S,
    backend: &Arc<dyn Backend>,
    metrics_only: bool,
    graceful: &GracefulShutdown,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let backend = Arc::clone(backend);
    let service = service_fn(move |request| handle(request, Arc::clone(&backend), metrics_only));
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let connection = graceful.watch(connection);
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "control connection ended with an error");
        }
    });
}

type HttpResponse = hyper::Response<Full<Bytes>>;

fn respond(status: u16, content_type: &str, body: Vec<u8>, allow: Option<&str>) -> HttpResponse {
    let mut builder = hyper::Response::builder().status(status).header(CONTENT_TYPE, content_type);
    if let Some(allow) = allow {
        builder = builder.header(ALLOW, allow);
    }
    builder.body(Full::new(Bytes::from(body))).expect("valid status and headers")
}

fn error_response(status: u16, error: &ApiError, allow: Option<&str>) -> HttpResponse {
    respond(status, wire::JSON, wire::encode_error(error), allow)
}

fn route_error_response(e: &RouteError) -> HttpResponse {
    error_response(e.status, &e.error, e.allow)
}

async fn handle(
    request: hyper::Request<Incoming>,
    backend: Arc<dyn Backend>,
    metrics_only: bool,
) -> Result<HttpResponse, Infallible> {
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    let response = answer(request, &method, &path, query.as_deref(), backend, metrics_only).await;
    tracing::debug!(%method, %path, status = response.status().as_u16(), "API request");
    Ok(response)
}

async fn answer(
    request: hyper::Request<Incoming>,
    method: &str,
    path: &str,
    query: Option<&str>,
    backend: Arc<dyn Backend>,
    metrics_only: bool,
) -> HttpResponse {
    if metrics_only && path != "/metrics" {
        let error = ApiError::not_found(format!(
            "no such route: {method} {path} (this address serves only GET /metrics)"
        ));
        return error_response(404, &error, None);
    }
    let body = match Limited::new(request.into_body(), wire::MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            return route_error_response(&RouteError::body_too_large())
        }
        Err(e) => {
            let error = ApiError::invalid(format!("cannot read the request body: {e}"));
            return error_response(400, &error, None);
        }
    };
    let api_request = match wire::parse_request(method, path, query, &body) {
        Ok(r) => r,
        Err(e) => return route_error_response(&e),
    };
    let route = api_request.route();
    let sent = api_request.clone();
    match tokio::task::spawn_blocking(move || backend.call(sent)).await {
        Ok(Ok(reply)) if wire::reply_fits(&api_request, &reply) => {
            let (content_type, body) = wire::encode_reply(&reply);
            respond(200, content_type, body, None)
        }
        Ok(Ok(reply)) => {
            let error = ApiError::internal(format!(
                "vswitchd answered {route} with a {} reply (a bug in the daemon)",
                wire::reply_name(&reply)
            ));
            tracing::error!("{}", error.message);
            error_response(500, &error, None)
        }
        Ok(Err(error)) => error_response(error.kind.http_status(), &error, None),
        Err(e) => {
            let error = ApiError::internal(format!("vswitchd failed while handling {route}: {e}"));
            tracing::error!("{}", error.message);
            error_response(500, &error, None)
        }
    }
}
