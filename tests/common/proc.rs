//! The real `exphub` binary as a child process (for kill -9 tests).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::PASSWORD;

pub struct Proc {
    pub child: Child,
    pub base: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the real binary on a free port; returns once it prints its address.
pub fn spawn_server(dir: &Path, log: &Path) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_exphub"));
    cmd.args(["serve", "--host", "127.0.0.1", "--port", "0", "--sessions-dir"])
        .arg(dir)
        .env("EXPHUB_EXPERIMENTER_PASSWORD", PASSWORD)
        .env("EXPHUB_LOG", "info");
    spawn(cmd, log)
}

/// Starts `cmd` (the binary with its arguments) with stderr to `log`; returns once it prints
/// its address.
pub fn spawn(mut cmd: Command, log: &Path) -> Proc {
    let mut child =
        cmd.stdout(Stdio::piped()).stderr(std::fs::File::create(log).unwrap()).spawn().expect("exphub starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("exphub serving on ") {
                let _ = tx.send(rest.trim_end_matches('/').to_owned());
            }
        }
    });
    let base = rx.recv_timeout(Duration::from_secs(20)).expect("server printed its address");
    Proc { child, base }
}

pub fn kill9(mut p: Proc) {
    p.child.kill().unwrap(); // SIGKILL
    p.child.wait().unwrap();
}
