//! The S3 test server (`scripts/s3-test-server.sh`, `tests/common/s3.rs`): objects round-trip
//! through an independent client (boto3), a stopped server refuses connections and comes back
//! on its port, a paused one accepts but never answers, the script is idempotent, and what
//! moto accepts and answers on the wire (no signature checks; S3's XML errors), which the
//! cache's own S3 client relies on in its tests.

#[path = "common/s3.rs"]
mod s3;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use s3::S3Server;

/// A well-formed SigV4 header with a signature that is not one: moto only parses it.
const FAKE_AUTH: &str = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, \
     SignedHeaders=host;x-amz-date, Signature=0000000000000000000000000000000000000000000000000000000000000000";

#[test]
fn objects_round_trip_through_boto3() {
    let s3 = S3Server::shared();
    assert_eq!(
        S3Server::shared().endpoint(),
        s3.endpoint(),
        "one shared server"
    );
    let bucket = s3.new_bucket("round-trip");
    let bytes: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    s3.put_object(&bucket, "objects/ab/1", &bytes);
    s3.put_object(&bucket, "objects/cd/2", b"");
    s3.put_object(&bucket, "other/3", b"x");

    assert_eq!(s3.get_object(&bucket, "objects/ab/1"), Some(bytes));
    assert_eq!(s3.get_object(&bucket, "objects/cd/2"), Some(vec![]));
    assert_eq!(s3.get_object(&bucket, "objects/missing"), None);
    assert_eq!(
        s3.list(&bucket, "objects/"),
        ["objects/ab/1", "objects/cd/2"]
    );
    assert_eq!(
        s3.list(&bucket, ""),
        ["objects/ab/1", "objects/cd/2", "other/3"]
    );

    // tampering: replace, delete (twice: no error, as in S3)
    s3.put_object(&bucket, "objects/ab/1", b"tampered");
    assert_eq!(
        s3.get_object(&bucket, "objects/ab/1").as_deref(),
        Some(&b"tampered"[..])
    );
    s3.delete_object(&bucket, "objects/ab/1");
    s3.delete_object(&bucket, "objects/ab/1");
    assert_eq!(s3.get_object(&bucket, "objects/ab/1"), None);
    assert_eq!(s3.list(&bucket, "objects/"), ["objects/cd/2"]);

    let env = s3.env();
    assert_eq!(
        env,
        [
            ("AWS_ENDPOINT_URL", s3.endpoint()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]
    );
}

#[test]
fn a_stopped_server_refuses_connections_and_restarts_on_its_port() {
    let mut s3 = S3Server::start();
    s3.create_bucket("cache");
    s3.put_object("cache", "k", b"v");
    let port = s3.port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(s3.accepts_connections());

    s3.stop();
    let err = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    assert!(!s3.is_running());
    assert!(s3.try_http("GET", "/", &[], b"").is_err());
    s3.stop(); // idempotent

    // back on the same port, empty, with its buckets made again
    s3.restart();
    assert_eq!(s3.port(), port);
    assert!(s3.is_running());
    assert_eq!(s3.list("cache", ""), Vec::<String>::new());
    s3.put_object("cache", "k", b"again");

    // a crash
    s3.kill();
    let err = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    s3.restart();
    assert_eq!(s3.get_object("cache", "k"), None);
}

#[test]
fn a_paused_server_accepts_but_does_not_answer() {
    let mut s3 = S3Server::start();
    s3.create_bucket("cache");
    s3.put_object("cache", "k", b"kept");
    s3.pause();
    let addr = SocketAddr::from(([127, 0, 0, 1], s3.port()));
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("accepted");
    conn.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let err = conn.read(&mut [0; 64]).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    s3.resume();
    // the request sent while paused is answered now
    let mut answer = String::new();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(s3.get_object("cache", "k").as_deref(), Some(&b"kept"[..]));
}

/// What a hand-written S3 client sees: moto parses but does not verify SigV4 signatures;
/// without an `Authorization` header a request is anonymous (reading a private object: 403);
/// errors are S3's XML (`<Error><Code>NoSuchKey</Code>...`), HEAD errors have no body.
#[test]
fn moto_accepts_any_signature_and_answers_s3_errors() {
    let s3 = S3Server::shared();
    let bucket = s3.new_bucket("wire");
    let auth = [("Authorization", FAKE_AUTH)];
    let octets = [
        ("Authorization", FAKE_AUTH),
        ("Content-Type", "application/octet-stream"),
        ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
    ];

    let r = s3.http("PUT", &format!("/{bucket}/a/k"), &octets, b"hello");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("etag").is_some());
    let r = s3.http("GET", &format!("/{bucket}/a/k"), &auth, b"");
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    // another client sees the same object
    assert_eq!(
        s3.get_object(&bucket, "a/k").as_deref(),
        Some(&b"hello"[..])
    );

    // conditional create
    let mut cond = octets.to_vec();
    cond.push(("If-None-Match", "*"));
    let r = s3.http("PUT", &format!("/{bucket}/a/k"), &cond, b"other");
    assert_eq!(r.status, 412, "{}", r.text());
    assert!(
        r.text().contains("<Code>PreconditionFailed</Code>"),
        "{}",
        r.text()
    );

    // errors
    let r = s3.http("GET", &format!("/{bucket}/a/missing"), &auth, b"");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("<Code>NoSuchKey</Code>"), "{}", r.text());
    assert!(r.text().contains("<Key>a/missing</Key>"), "{}", r.text());
    let r = s3.http("HEAD", &format!("/{bucket}/a/missing"), &auth, b"");
    assert_eq!((r.status, r.body.len()), (404, 0));
    let r = s3.http("GET", "/no-such-bucket-here/k", &auth, b"");
    assert_eq!(r.status, 404);
    assert!(
        r.text().contains("<Code>NoSuchBucket</Code>"),
        "{}",
        r.text()
    );
    let r = s3.http("GET", "/no-such-bucket-here?list-type=2", &auth, b"");
    assert_eq!(r.status, 404);
    assert!(
        r.text().contains("<Code>NoSuchBucket</Code>"),
        "{}",
        r.text()
    );

    // listing
    let r = s3.http(
        "GET",
        &format!("/{bucket}?list-type=2&prefix=a/"),
        &auth,
        b"",
    );
    assert_eq!(r.status, 200);
    assert!(r.text().contains("<Key>a/k</Key>"), "{}", r.text());
    assert!(r.text().contains("<KeyCount>1</KeyCount>"), "{}", r.text());

    // anonymous: reading a private object is refused; an unparsable Authorization is a 500
    let r = s3.http("GET", &format!("/{bucket}/a/k"), &[], b"");
    assert_eq!((r.status, r.body.len()), (403, 0));
    let r = s3.http(
        "GET",
        &format!("/{bucket}/a/k"),
        &[("Authorization", "garbage")],
        b"",
    );
    assert_eq!(r.status, 500);

    let r = s3.http("DELETE", &format!("/{bucket}/a/k"), &auth, b"");
    assert_eq!(r.status, 204);
    assert_eq!(s3.get_object(&bucket, "a/k"), None);
}

/// `start` twice is one server, `stop` twice is no error, and `stop` waits until it is gone.
#[test]
fn the_script_is_idempotent() {
    struct Stop(PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = script("stop", &self.0);
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn script(cmd: &str, dir: &std::path::Path) -> std::process::Output {
        Command::new("bash")
            .arg(s3::SCRIPT)
            .arg(cmd)
            .arg(dir)
            .env("S3_TEST_VENV", s3::venv())
            .env_remove("PORT")
            .output()
            .expect("bash runs")
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("s3-script-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _stop = Stop(dir.clone());

    let first = script("start", &dir);
    assert!(first.status.success(), "{first:?}");
    let pid = std::fs::read_to_string(dir.join("pid")).unwrap();
    let port = std::fs::read_to_string(dir.join("port")).unwrap();
    let port = port.trim();
    let exports = String::from_utf8(first.stdout).unwrap();
    assert_eq!(
        exports,
        format!(
            "export AWS_ENDPOINT_URL=http://127.0.0.1:{port}\nexport AWS_ACCESS_KEY_ID=test\n\
             export AWS_SECRET_ACCESS_KEY=test\nexport AWS_REGION=us-east-1\n"
        )
    );
    let second = script("start", &dir);
    assert!(second.status.success(), "{second:?}");
    assert_eq!(String::from_utf8(second.stdout).unwrap(), exports);
    assert_eq!(std::fs::read_to_string(dir.join("pid")).unwrap(), pid);
    let env = script("env", &dir);
    assert_eq!(String::from_utf8(env.stdout).unwrap(), exports);
    assert!(script("status", &dir).status.success());

    let server_pid = pid.split_whitespace().next().unwrap();
    assert!(script("stop", &dir).status.success());
    // gone (or a zombie, which holds no socket)
    let stat = std::fs::read_to_string(format!("/proc/{server_pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty()
            || stat
                .rsplit_once(')')
                .unwrap()
                .1
                .trim_start()
                .starts_with('Z'),
        "{stat}"
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err());
    assert!(script("stop", &dir).status.success());
    assert!(!script("status", &dir).status.success());
    assert!(!script("env", &dir).status.success());
}
