//! A small S3 client for the remote cache: requests signed by `rusty-s3` (no I/O of its own),
//! sent by `ureq` (blocking, like the rest of the executor), with time-outs and bounded retries.
//! Messages name the bucket and object, never a signed URL or a secret.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use crate::config::CacheSettings;

/// How long a signed request stays valid.
const SIGNED_FOR: Duration = Duration::from_secs(3600);

/// Why a request did not get an answer worth having.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The server could not be reached or kept failing (time-outs, 5xx): the caller may go on
    /// without the cache.
    #[error("{0}")]
    Unavailable(String),
    /// The server answered with a refusal (403, a missing bucket): a configuration problem.
    #[error("{0}")]
    Refused(String),
    /// Writing what was received failed here (a full disk): not the server's fault.
    #[error("{0}")]
    Local(String),
}

/// One bucket and prefix, with the credentials to use them.
#[derive(Debug)]
pub struct S3 {
    bucket: Bucket,
    prefix: String,
    credentials: Credentials,
    agent: ureq::Agent,
    retries: u32,
    /// `s3://bucket/prefix`, for messages.
    pub url: String,
}

impl S3 {
    /// The client for `settings` (`url = "s3://bucket/prefix"`), with credentials from the
    /// usual AWS environment variables or profile.
    pub fn new(settings: &CacheSettings) -> anyhow::Result<Self> {
        let rest = settings.url.strip_prefix("s3://").ok_or_else(|| {
            anyhow::anyhow!(
                "`[settings.cache] url = \"{}\"`: expected `s3://bucket/prefix`",
                settings.url
            )
        })?;
        let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        anyhow::ensure!(
            !name.is_empty(),
            "`[settings.cache] url = \"{}\"` names no bucket",
            settings.url
        );
        let region = settings
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let endpoint = settings
            .endpoint
            .clone()
            .or_else(|| env("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env("AWS_ENDPOINT_URL"));
        let style = if endpoint.is_some() {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let endpoint = endpoint.unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let endpoint: url::Url = endpoint
            .parse()
            .map_err(|e| anyhow::anyhow!("the S3 endpoint `{endpoint}` is not a URL ({e})"))?;
        if endpoint.scheme() == "http" && !settings.allow_http {
            anyhow::bail!(
                "the S3 endpoint `{endpoint}` is plain http: requests and credentials would travel \
                 unencrypted\nhint: use https, or set `allow_http = true` in `[settings.cache]` \
                 for a server on a trusted network"
            );
        }
        let bucket = Bucket::new(endpoint, style, name.to_owned(), region)
            .map_err(|e| anyhow::anyhow!("bucket `{name}`: {e}"))?;
        let mut prefix = prefix.trim_matches('/').to_owned();
        if !prefix.is_empty() {
            prefix.push('/');
        }
        let timeout = Duration::from_secs_f64(settings.timeout_seconds.max(0.1));
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(timeout))
            .timeout_recv_response(Some(timeout))
            .timeout_per_read(Some(timeout))
            .timeout_per_write(Some(timeout))
            .build()
            .into();
        Ok(Self {
            url: settings.url.clone(),
            bucket,
            prefix,
            credentials: credentials()?,
            agent,
            retries: settings.retries,
        })
    }

    fn object(&self, rel: &str) -> String {
        format!("{}{rel}", self.prefix)
    }

    /// Sends a request (made afresh for each attempt: a file body is reopened), retrying what
    /// may pass on a second try (connection errors, time-outs, 5xx, 429).
    fn send(
        &self,
        what: &str,
        mut attempt: impl FnMut() -> Result<Response, ureq::Error>,
    ) -> Result<Response, S3Error> {
        let mut last = String::new();
        for i in 0..=self.retries {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(200 << (i - 1).min(4)));
            }
            match attempt() {
                Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => {
                    last = format!("the server answered {}", r.status());
                }
                Ok(r) => return Ok(r),
                Err(e) => last = describe(&e),
            }
        }
        Err(S3Error::Unavailable(format!(
            "{what} on `{}`: {last} ({} attempt(s))",
            self.url,
            self.retries + 1
        )))
    }

    fn refused(&self, what: &str, response: Response) -> S3Error {
        let status = response.status();
        let mut body = response.into_body();
        let text = body
            .with_config()
            .limit(4096)
            .read_to_string()
            .unwrap_or_default();
        // S3 explains in `<Code>`: NoSuchBucket, AccessDenied, SignatureDoesNotMatch, ...
        let code = text
            .split_once("<Code>")
            .and_then(|(_, r)| r.split_once("</Code>"))
            .map_or_else(String::new, |(c, _)| format!(" ({c})"));
        S3Error::Refused(format!(
            "{what} on `{}`: the server answered {status}{code}",
            self.url
        ))
    }

    /// The size of object `rel`, `None` when there is none.
    pub fn head(&self, rel: &str) -> Result<Option<u64>, S3Error> {
        let key = self.object(rel);
        let url = self
            .bucket
            .head_object(Some(&self.credentials), &key)
            .sign(SIGNED_FOR);
        let what = format!("HEAD `{key}`");
        let r = self.send(&what, || self.agent.head(url.as_str()).call())?;
        match r.status().as_u16() {
            200 => Ok(Some(content_length(&r).unwrap_or(0))),
            404 => Ok(None),
            _ => Err(self.refused(&what, r)),
        }
    }

    /// The bytes of object `rel` (at most `limit`: a larger object is refused), `None` when
    /// there is none.
    pub fn get(&self, rel: &str, limit: u64) -> Result<Option<Vec<u8>>, S3Error> {
        let mut out = Vec::new();
        Ok(self
            .get_into(rel, limit, &mut |chunk| {
                out.extend_from_slice(chunk);
                Ok(())
            })?
            .map(|_| out))
    }

    /// Streams object `rel` to `sink` in chunks; at most `limit` bytes. Returns the size, or
    /// `None` when there is no such object.
    pub fn get_into(
        &self,
        rel: &str,
        limit: u64,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<Option<u64>, S3Error> {
        let key = self.object(rel);
        let url = self
            .bucket
            .get_object(Some(&self.credentials), &key)
            .sign(SIGNED_FOR);
        let what = format!("GET `{key}`");
        let r = self.send(&what, || self.agent.get(url.as_str()).call())?;
        match r.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            _ => return Err(self.refused(&what, r)),
        }
        if let Some(len) = content_length(&r)
            && len > limit
        {
            return Err(S3Error::Refused(format!(
                "{what} on `{}`: {len} bytes, more than the {limit} expected",
                self.url
            )));
        }
        let mut reader = r.into_body().into_reader();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| S3Error::Unavailable(format!("{what} on `{}`: {e}", self.url)))?;
            if n == 0 {
                return Ok(Some(total));
            }
            total += n as u64;
            if total > limit {
                return Err(S3Error::Refused(format!(
                    "{what} on `{}`: more than the {limit} bytes expected",
                    self.url
                )));
            }
            sink(&buf[..n]).map_err(|e| S3Error::Local(format!("{what}: writing: {e}")))?;
        }
    }

    /// Writes `bytes` as object `rel`.
    pub fn put(&self, rel: &str, bytes: &[u8]) -> Result<(), S3Error> {
        self.put_with(rel, |request| request.send(bytes))
    }

    /// Writes the file at `path` as object `rel`, streamed.
    pub fn put_file(&self, rel: &str, path: &Path) -> Result<(), S3Error> {
        self.put_with(rel, |request| {
            request.send(File::open(path).map_err(ureq::Error::Io)?)
        })
    }

    /// A PUT of object `rel` whose body `send` gives (again for each attempt).
    fn put_with(
        &self,
        rel: &str,
        send: impl Fn(ureq::RequestBuilder<ureq::typestate::WithBody>) -> Result<Response, ureq::Error>,
    ) -> Result<(), S3Error> {
        let key = self.object(rel);
        let url = self
            .bucket
            .put_object(Some(&self.credentials), &key)
            .sign(SIGNED_FOR);
        let what = format!("PUT `{key}`");
        let r = self.send(&what, || send(self.agent.put(url.as_str())))?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(self.refused(&what, r))
        }
    }
}

type Response = ureq::http::Response<ureq::Body>;

/// The `Content-Length` of a response, when it gives one.
fn content_length(r: &Response) -> Option<u64> {
    r.headers()
        .get("content-length")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A transport error in a sentence, without the URL (it carries a signature).
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => io.to_string(),
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        // Other errors may quote the request's URL, which carries its signature.
        _ => "the request failed".into(),
    }
}

/// Credentials from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`), else
/// the profile `AWS_PROFILE` (default `default`) of `AWS_SHARED_CREDENTIALS_FILE` (default
/// `~/.aws/credentials`). The error says what was tried, never a secret.
fn credentials() -> anyhow::Result<Credentials> {
    let token = env("AWS_SESSION_TOKEN");
    match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        (Some(key), Some(secret)) => {
            return Ok(match token {
                Some(t) => Credentials::new_with_token(key, secret, t),
                None => Credentials::new(key, secret),
            });
        }
        (Some(_), None) => anyhow::bail!(
            "S3 credentials: `AWS_ACCESS_KEY_ID` is set but `AWS_SECRET_ACCESS_KEY` is not"
        ),
        (None, Some(_)) => anyhow::bail!(
            "S3 credentials: `AWS_SECRET_ACCESS_KEY` is set but `AWS_ACCESS_KEY_ID` is not"
        ),
        (None, None) => {}
    }
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
    let file = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".aws/credentials")));
    let tried = "no S3 credentials: `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` are not set";
    let Some(file) = file else {
        anyhow::bail!("{tried}, and there is no home directory for `~/.aws/credentials`");
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| anyhow::anyhow!("{tried}, and `{}` cannot be read ({e})", file.display()))?;
    let values = profile_values(&text, &profile);
    let get = |k: &str| values.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(key), Some(secret)) => Ok(match get("aws_session_token") {
            Some(t) => Credentials::new_with_token(key, secret, t),
            None => Credentials::new(key, secret),
        }),
        _ => anyhow::bail!(
            "{tried}, and profile `{profile}` of `{}` has no `aws_access_key_id` and \
             `aws_secret_access_key`",
            file.display()
        ),
    }
}

/// The `key = value` lines of `[profile]` in an AWS credentials file.
fn profile_values(text: &str, profile: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == profile;
        } else if inside && let Some((k, v)) = line.split_once('=') {
            out.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_profile_of_a_credentials_file() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key = B\n\n[lab]\naws_access_key_id=C\naws_secret_access_key=D\n";
        let lab = profile_values(text, "lab");
        assert_eq!(
            lab,
            [
                ("aws_access_key_id".to_owned(), "C".to_owned()),
                ("aws_secret_access_key".to_owned(), "D".to_owned())
            ]
        );
        assert!(profile_values(text, "none").is_empty());
    }
}
