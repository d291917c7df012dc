//! The internal API between nodes: `POST /internal/v1/offer`, `POST /internal/v1/ice` and
//! `GET /internal/v1/health`, served only on `--internal-addr` (never on the public listener).
//!
//! Every request carries `X-Exphub-Time` (unix ms) and `X-Exphub-Signature`, the hex
//! HMAC-SHA256 under the cluster secret of `method \n path \n time \n hex(sha256(body))`.
//! A request without a valid signature, or signed more than [`MAX_SKEW_MS`] away from now,
//! gets 401 and is not handled.

use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};

pub const TIME_HEADER: &str = "x-exphub-time";
pub const SIGNATURE_HEADER: &str = "x-exphub-signature";
/// The front node that forwarded the request (for the owner's log).
pub const VIA_HEADER: &str = "x-exphub-via";
/// How far a signature's time may be from the receiver's clock.
pub const MAX_SKEW_MS: i64 = 30_000;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

fn message(method: &str, path: &str, time_ms: i64, body: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    format!("{method}\n{path}\n{time_ms}\n{}", hex(digest.as_ref()))
}

/// The cluster secret as an HMAC key.
#[derive(Clone)]
pub struct Signer(ring::hmac::Key);

impl Signer {
    pub fn new(secret: &[u8]) -> Self {
        Signer(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret))
    }

    /// The signature header's value for a request.
    pub fn sign(&self, method: &str, path: &str, time_ms: i64, body: &[u8]) -> String {
        hex(ring::hmac::sign(&self.0, message(method, path, time_ms, body).as_bytes()).as_ref())
    }

    /// Whether a request's time and signature are valid at `now_ms` (constant-time compare).
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        time: Option<&str>,
        sig: Option<&str>,
        body: &[u8],
        now_ms: i64,
    ) -> bool {
        let (Some(time), Some(sig)) = (time, sig) else { return false };
        let Ok(t) = time.parse::<i64>() else { return false };
        if (now_ms - t).abs() > MAX_SKEW_MS {
            return false;
        }
        let Some(sig) = unhex(sig) else { return false };
        ring::hmac::verify(&self.0, message(method, path, t, body).as_bytes(), &sig).is_ok()
    }
}

/// A forwarded request's answer: status, content type and body, returned unchanged.
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// POSTs `body` to `base` (`http://host:port`) + `path`, signed, within `timeout`.
pub async fn post(
    signer: &Signer,
    via: &str,
    base: &str,
    path: &str,
    content_type: Option<&str>,
    body: Bytes,
    timeout: Duration,
) -> Result<Answer, String> {
    request(signer, via, "POST", base, path, content_type, body, timeout).await
}

/// GETs `base` + `path`, signed, within `timeout` (the health probe).
pub async fn get(signer: &Signer, via: &str, base: &str, path: &str, timeout: Duration) -> Result<Answer, String> {
    request(signer, via, "GET", base, path, None, Bytes::new(), timeout).await
}

#[allow(clippy::too_many_arguments)]
async fn request(
    signer: &Signer,
    via: &str,
    method: &str,
    base: &str,
    path: &str,
    content_type: Option<&str>,
    body: Bytes,
    timeout: Duration,
) -> Result<Answer, String> {
    let authority = base.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let now = crate::hub::now_ms();
    let signature = signer.sign(method, path, now, &body);
    let work = async {
        let stream = tokio::net::TcpStream::connect(&authority).await.map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &authority)
            .header(TIME_HEADER, now.to_string())
            .header(SIGNATURE_HEADER, signature)
            .header(VIA_HEADER, via);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Answer { status, content_type, body })
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| format!("no answer within {timeout:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_check_secret_path_body_and_time() {
        let s = Signer::new(b"secret");
        let now = 1_700_000_000_000;
        let sig = s.sign("POST", "/internal/v1/offer", now, b"{}");
        let t = now.to_string();
        assert!(s.verify("POST", "/internal/v1/offer", Some(&t), Some(&sig), b"{}", now + 1000));
        assert!(!s.verify("POST", "/internal/v1/ice", Some(&t), Some(&sig), b"{}", now), "other path");
        assert!(!s.verify("POST", "/internal/v1/offer", Some(&t), Some(&sig), b"{ }", now), "other body");
        assert!(!s.verify("POST", "/internal/v1/offer", Some(&t), Some(&sig), b"{}", now + 31_000), "too old");
        assert!(!Signer::new(b"other").verify("POST", "/internal/v1/offer", Some(&t), Some(&sig), b"{}", now));
        assert!(!s.verify("POST", "/internal/v1/offer", None, Some(&sig), b"{}", now), "no time");
        assert!(!s.verify("POST", "/internal/v1/offer", Some(&t), Some("zz"), b"{}", now), "not hex");
        assert!(!s.verify("POST", "/internal/v1/offer", Some("x"), Some(&sig), b"{}", now), "bad time");
    }
}
