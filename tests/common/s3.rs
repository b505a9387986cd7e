//! A real S3-compatible server (moto) for integration tests, started by
//! `scripts/s3-test-server.sh`.
//!
//! ```ignore
//! let s3 = S3Server::start();                 // private; or S3Server::shared()
//! s3.create_bucket("cache");
//! Command::new(env!("CARGO_BIN_EXE_pipeline")).envs(s3.env());   // AWS_ENDPOINT_URL, keys, region
//! assert_eq!(s3.list("cache", "objects/"), ["objects/ab12..."]);
//! s3.put_object("cache", "objects/ab12...", b"tampered");         // corrupt what the cache wrote
//! s3.stop();                                  // the endpoint now refuses connections
//! ```
//!
//! The server is `moto_server` (Python, from a virtual environment that the script creates
//! under `target/s3-venv` on first use, ~40 s; `S3_TEST_VENV` names another), listening on
//! 127.0.0.1 on a port the kernel chose. A start takes about a second. It keeps everything in
//! memory and does not check request signatures; see `scripts/s3-test-server.sh`. The object
//! helpers ([`S3Server::put_object`], [`S3Server::get_object`], ...) go through boto3
//! (`scripts/s3-tool.py`, about 0.7 s a call): an independent S3 client, so what they see is what
//! any S3 client sees. [`S3Server::http`] sends one raw HTTP request, to check exactly what
//! the server answers.
//!
//! Lifetime, as for the Slurm cluster (`slurm.rs`): an `S3Server` is stopped (the script's
//! `stop`: SIGTERM, waited for) when it is dropped, also when a test panics (its directory,
//! with the server's log, is then kept). Statics are never dropped, so the server shared by the
//! tests of one binary lives in an `Arc` that the tests hold ([`S3Server::shared`]); the last
//! test to let go of it stops it. A process killed before its drops ran leaves its servers
//! running: the next start stops every server whose owning process is gone (the directory
//! names under `$CARGO_TARGET_TMPDIR/s3-servers/` carry the owner's pid).
//!
//! Tests that stop, kill, pause or restart the server need a private one ([`S3Server::start`];
//! those methods take `&mut self`, which a [`Shared`] handle does not give). Tests sharing a
//! server use their own buckets ([`S3Server::new_bucket`]).

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The script that starts and stops the servers.
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/s3-test-server.sh");
/// The boto3 command line behind the object helpers.
pub const TOOL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/s3-tool.py");

/// The credentials the server is given (it accepts any; these are what `env()` hands out).
pub const ACCESS_KEY_ID: &str = "test";
pub const SECRET_ACCESS_KEY: &str = "test";
pub const REGION: &str = "us-east-1";

/// The virtual environment with moto and boto3: `$S3_TEST_VENV`, else `<repo>/target/s3-venv`.
pub fn venv() -> PathBuf {
    std::env::var_os("S3_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/s3-venv")))
}

#[derive(Debug)]
pub struct S3Server {
    dir: PathBuf,
    port: u16,
    /// The buckets made through [`S3Server::create_bucket`] (made again by `restart`).
    buckets: Mutex<BTreeSet<String>>,
    /// Stopped by SIGSTOP ([`S3Server::pause`]).
    paused: AtomicBool,
    /// A test using it panicked: keep the directory (log) when stopping.
    keep: AtomicBool,
}

/// A handle on the shared server ([`S3Server::shared`]); derefs to [`S3Server`].
#[derive(Debug)]
pub struct Shared(Arc<S3Server>);

impl std::ops::Deref for Shared {
    type Target = S3Server;
    fn deref(&self) -> &S3Server {
        &self.0
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.keep.store(true, Ordering::Relaxed);
        }
    }
}

/// One raw HTTP exchange ([`S3Server::http`]).
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

static SHARED: Mutex<Weak<S3Server>> = Mutex::new(Weak::new());
static COUNTER: AtomicUsize = AtomicUsize::new(0);
static BUCKETS: AtomicUsize = AtomicUsize::new(0);

fn base_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("s3-servers")
}

/// `bash s3-test-server.sh CMD DIR` (bash: independent of the file's exec bit).
fn script_command(cmd: &str, dir: &Path) -> Command {
    let mut c = Command::new("bash");
    c.arg(SCRIPT)
        .arg(cmd)
        .arg(dir)
        .env("S3_TEST_VENV", venv())
        .env_remove("PORT")
        .stdin(Stdio::null());
    c
}

fn script(cmd: &str, dir: &Path) -> Output {
    script_command(cmd, dir)
        .output()
        .unwrap_or_else(|e| panic!("running bash {SCRIPT}: {e}"))
}

fn describe(out: &Output) -> String {
    format!(
        "({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Stops the servers whose owning test process is gone (killed before its drops ran).
fn reap_orphans(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let out = script("stop", &e.path());
        eprintln!(
            "stopped the orphaned S3 server {}: {}",
            e.path().display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        if out.status.success() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The pid in `DIR/pid` ("PID STARTTIME"), if any.
fn read_pid(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(dir.join("pid"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether `pid` is gone (a zombie counts as gone: its sockets are closed).
fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn signal(pid: u32, sig: &str) {
    let out = Command::new("bash")
        .args(["-c", "kill -s \"$1\" \"$2\"", "_", sig, &pid.to_string()])
        .output()
        .expect("running bash -c kill");
    assert!(
        out.status.success(),
        "kill -s {sig} {pid} {}",
        describe(&out)
    );
}

impl S3Server {
    /// Starts a private server (stopped when dropped); panics with the script's output
    /// (errors, the server's log tail) if it cannot.
    pub fn start() -> S3Server {
        Self::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// The server shared by the tests of this binary that run at the same time (see the
    /// module documentation).
    pub fn shared() -> Shared {
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = shared.upgrade() {
            return Shared(s);
        }
        let s = Arc::new(Self::start());
        *shared = Arc::downgrade(&s);
        Shared(s)
    }

    pub fn try_start() -> Result<S3Server, String> {
        let base = base_dir();
        std::fs::create_dir_all(&base).map_err(|e| format!("creating {}: {e}", base.display()))?;
        let dir = {
            // one reaper at a time across test processes (the port is the kernel's choice:
            // starts need no lock)
            let lock = File::create(base.join(".lock"))
                .map_err(|e| format!("creating {}/.lock: {e}", base.display()))?;
            lock.lock()
                .map_err(|e| format!("locking {}/.lock: {e}", base.display()))?;
            reap_orphans(&base);
            base.join(format!(
                "{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ))
        };
        // left by an earlier process that had our pid (so the reaper skipped it)
        if dir.exists() {
            script("stop", &dir);
            let _ = std::fs::remove_dir_all(&dir);
        }
        let out = script("start", &dir);
        let mut server = S3Server {
            dir,
            port: 0,
            buckets: Mutex::new(BTreeSet::new()),
            paused: AtomicBool::new(false),
            keep: AtomicBool::new(false),
        };
        if !out.status.success() {
            // dropping `server` stops what did start, and keeps its log
            server.keep.store(true, Ordering::Relaxed);
            return Err(format!(
                "{SCRIPT} start {} failed {}",
                server.dir.display(),
                describe(&out)
            ));
        }
        server.port = server.read_port()?;
        Ok(server)
    }

    fn read_port(&self) -> Result<u16, String> {
        let p = self.dir.join("port");
        let text =
            std::fs::read_to_string(&p).map_err(|e| format!("reading {}: {e}", p.display()))?;
        text.trim()
            .parse()
            .map_err(|e| format!("{}: {text:?}: {e}", p.display()))
    }

    /// The server's directory: `server.log`, `pid`, `port`, `env`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`: what a
    /// client (the `pipeline` binary) needs to reach this server (`Command::envs`).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_owned()),
            ("AWS_REGION", REGION.to_owned()),
        ]
    }

    /// The last lines of the server's log (its access log: one line a request), for failure
    /// messages.
    pub fn log_tail(&self) -> String {
        let p = self.dir.join("server.log");
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let mut s = format!("--- last lines of {}:\n", p.display());
        for l in &lines[lines.len().saturating_sub(30)..] {
            s += l;
            s.push('\n');
        }
        s
    }

    // --- buckets and objects (boto3, scripts/s3-tool.py) --------------------------------------

    /// `python s3-tool.py ARGS` against this server, with nothing of the machine's AWS
    /// configuration.
    pub fn tool(&self, args: &[&str]) -> Command {
        let mut c = Command::new(venv().join("bin/python"));
        c.arg(TOOL)
            .args(args)
            .envs(self.env())
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("PYTHONPATH")
            .env_remove("PYTHONHOME")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost");
        c
    }

    fn run_tool(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut c = self.tool(args);
        c.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap_or_else(|e| {
            panic!(
                "running {} {TOOL}: {e}",
                venv().join("bin/python").display()
            )
        });
        if let Some(bytes) = stdin {
            let mut pipe = child.stdin.take().expect("piped stdin");
            let bytes = bytes.to_vec();
            // a thread: the pipe may be smaller than the object
            std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            });
        }
        child.wait_with_output().expect("waiting for s3-tool.py")
    }

    #[track_caller]
    fn run_tool_ok(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let out = self.run_tool(args, stdin);
        assert!(
            out.status.success(),
            "s3-tool.py {args:?} on {} failed {}",
            self.endpoint(),
            describe(&out)
        );
        out
    }

    /// Creates a bucket (no error if this server already has it).
    #[track_caller]
    pub fn create_bucket(&self, name: &str) {
        self.run_tool_ok(&["create-bucket", name], None);
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned());
    }

    /// Creates a bucket of a name no other test of this process uses (`PREFIX-PID-N`, for tests
    /// sharing a server); its name.
    #[track_caller]
    pub fn new_bucket(&self, prefix: &str) -> String {
        let prefix: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        let prefix = match prefix.trim_matches('-') {
            "" => "bucket",
            p => p,
        };
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            BUCKETS.fetch_add(1, Ordering::Relaxed)
        );
        self.create_bucket(&name);
        name
    }

    /// Writes an object (replacing any of that key).
    #[track_caller]
    pub fn put_object(&self, bucket: &str, key: &str, bytes: impl AsRef<[u8]>) {
        self.run_tool_ok(&["put", bucket, key, "-"], Some(bytes.as_ref()));
    }

    /// An object's bytes; `None` if the bucket has no such key. Panics on other errors (no
    /// such bucket, server down).
    #[track_caller]
    pub fn get_object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let out = self.run_tool(&["get", bucket, key], None);
        match out.status.code() {
            Some(0) => Some(out.stdout),
            Some(3) => None,
            _ => panic!(
                "s3-tool.py get {bucket} {key} on {} failed {}",
                self.endpoint(),
                describe(&out)
            ),
        }
    }

    /// Deletes an object (no error if there is none).
    #[track_caller]
    pub fn delete_object(&self, bucket: &str, key: &str) {
        self.run_tool_ok(&["delete", bucket, key], None);
    }

    /// The keys under `prefix` ("" for all), in S3's order (sorted by UTF-8 bytes).
    #[track_caller]
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let out = self.run_tool_ok(&["list", bucket, prefix], None);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    // --- raw HTTP ---------------------------------------------------------------------------

    /// Sends one HTTP/1.1 request (`path` with its query, e.g. `/bucket?list-type=2`) and reads
    /// the whole answer (the server closes each connection). Unsigned unless `headers` has an
    /// `Authorization`: moto then treats the request as anonymous (see the smoke tests).
    /// Panics if the server cannot be reached.
    #[track_caller]
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        self.try_http(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {}{path}: {e}", self.endpoint()))
    }

    pub fn try_http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<HttpResponse> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        for (k, v) in headers {
            req += &format!("{k}: {v}\r\n");
        }
        req += "\r\n";
        s.write_all(req.as_bytes())?;
        s.write_all(body)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| bad("no end of the response head"))?;
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad("no status line"))?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Ok(HttpResponse {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        })
    }

    /// Whether something accepts TCP connections on the server's port (a paused server does;
    /// a stopped one does not).
    pub fn accepts_connections(&self) -> bool {
        TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(2),
        )
        .is_ok()
    }

    /// `s3-test-server.sh status`: the server runs and answers HTTP.
    pub fn is_running(&self) -> bool {
        script("status", &self.dir).status.success()
    }

    // --- outages (private servers only) -------------------------------------------------------

    /// Stops the server (SIGTERM, waited for): from now on the endpoint refuses connections.
    /// Everything it held is lost.
    #[track_caller]
    pub fn stop(&mut self) {
        self.resume();
        let out = script("stop", &self.dir);
        assert!(
            out.status.success(),
            "{SCRIPT} stop {} failed {}",
            self.dir.display(),
            describe(&out)
        );
    }

    /// Kills the server with SIGKILL (a crash: no goodbye to open connections) and waits until
    /// it is gone.
    #[track_caller]
    pub fn kill(&mut self) {
        if let Some(pid) = read_pid(&self.dir).filter(|p| !is_gone(*p)) {
            signal(pid, "KILL");
            let t0 = Instant::now();
            while !is_gone(pid) {
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "moto_server {pid} survived SIGKILL"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.paused.store(false, Ordering::Relaxed);
        // forget the pid (the script finds it gone)
        self.stop();
    }

    /// Freezes the server (SIGSTOP): connections are still accepted (by the kernel) but never
    /// answered, so clients run into their timeouts. [`S3Server::resume`] lets it go on, with
    /// its data.
    #[track_caller]
    pub fn pause(&mut self) {
        let pid = read_pid(&self.dir).expect("no running server to pause");
        signal(pid, "STOP");
        self.paused.store(true, Ordering::Relaxed);
    }

    /// Undoes [`S3Server::pause`] (no-op if not paused).
    pub fn resume(&self) {
        if self.paused.swap(false, Ordering::Relaxed)
            && let Some(pid) = read_pid(&self.dir)
        {
            signal(pid, "CONT");
        }
    }

    /// Starts the server again on the same port after [`S3Server::stop`] or
    /// [`S3Server::kill`] (or stops and starts a running one). It comes back empty; the buckets
    /// made by [`S3Server::create_bucket`] are made again (empty).
    #[track_caller]
    pub fn restart(&mut self) {
        self.stop();
        let out = script_command("start", &self.dir)
            .env("PORT", self.port.to_string())
            .output()
            .unwrap_or_else(|e| panic!("running bash {SCRIPT}: {e}"));
        assert!(
            out.status.success(),
            "{SCRIPT} start {} (PORT={}) failed {}",
            self.dir.display(),
            self.port,
            describe(&out)
        );
        let buckets: Vec<String> = self
            .buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        for b in buckets {
            self.create_bucket(&b);
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.resume();
        let out = script("stop", &self.dir);
        if !out.status.success() {
            eprintln!(
                "stopping the S3 server in {} failed {}",
                self.dir.display(),
                describe(&out)
            );
            return;
        }
        if std::thread::panicking() || self.keep.load(Ordering::Relaxed) {
            // keep the log for the post-mortem (the next test run removes it)
            eprintln!(
                "S3 server stopped; its log: {}/server.log",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
