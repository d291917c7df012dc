//! Upload lag: a research file's end → its copy in the object store, through the server's own
//! uploader (`record::uploader`), for what a run of two-person experiments leaves behind.
//!
//! Each "experiment end" finishes 8 files at once (2 participants × raw/processed × audio/video:
//! video segments of `--video-mb` MiB, audio of 1/10 of that), plus the manifest; `--ends` of
//! them, `--every-ms` apart. Prints the lag's p50/p95/max over every file.
//!
//! ```text
//! cargo run --release --example upload_lag -- --store file:///tmp/exphub-objects
//! AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x cargo run --release --example upload_lag -- \
//!     --store 's3://lab/exphub?endpoint=http://127.0.0.1:5000'   # e.g. moto_server -p 5000
//! ```

use std::time::{Duration, Instant};

use exphub::record::store::StoreUrl;
use exphub::record::uploader::{Target, Upload, Uploader};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_owned())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = StoreUrl::parse(&arg("--store", "file:///tmp/exphub-upload-lag"))?;
    let ends: usize = arg("--ends", "10").parse()?;
    let every = Duration::from_millis(arg("--every-ms", "1000").parse()?);
    let video_bytes = (arg("--video-mb", "4").parse::<f64>()? * 1048576.0) as usize;
    let store = exphub::open_object_store(&url)?;
    let (tx, rx) = std::sync::mpsc::channel();
    let up = Uploader::start(Target { store, index: None, on_upload: Some(tx) })?;
    let dir = std::env::temp_dir().join(format!("exphub-upload-lag-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // Incompressible-looking bytes (the store does not care, but be honest).
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut bytes = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    };
    let mut sent = 0;
    let t0 = Instant::now();
    for e in 0..ends {
        let mut files = vec![];
        for p in ["p0", "p1"] {
            for kind in ["raw", "processed"] {
                for (media, size) in [("video", video_bytes), ("audio", video_bytes / 10)] {
                    let name = format!("{p}_{kind}_{media}_{e}-1.webm");
                    std::fs::write(dir.join(&name), bytes(size))?;
                    files.push((name, kind));
                }
            }
        }
        std::fs::write(dir.join("manifest.json"), format!("{{\"end\": {e}}}"))?;
        files.push(("manifest.json".into(), "manifest"));
        let finished = Instant::now();
        for (name, kind) in files {
            up.send(Upload {
                session_id: "lag".into(),
                tag: None,
                local: dir.join(&name),
                rel: name,
                kind: kind.into(),
                sha256: if kind == "manifest" { None } else { Some("0".repeat(64)) },
                finished,
                complete: true,
                if_absent: false,
            });
            sent += 1;
        }
        std::thread::sleep(every.saturating_sub(finished.elapsed()));
    }
    let mut lags = vec![];
    while lags.len() < sent {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok((_, lag)) => lags.push(lag.as_secs_f64() * 1000.0),
            Err(_) => break,
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    up.close(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
    lags.sort_by(f64::total_cmp);
    let q = |p: f64| lags.get(((lags.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or(f64::NAN);
    let mb = ends as f64 * (4.0 * 1.1 * video_bytes as f64) / 1048576.0;
    println!(
        "{url}: {} of {sent} files ({mb:.0} MiB) in {wall:.1} s; lag p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        lags.len(),
        q(0.5),
        q(0.95),
        q(1.0)
    );
    Ok(())
}
