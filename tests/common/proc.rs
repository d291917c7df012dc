//! The real `exphub` binary as a child process (for kill -9 tests).

use std::path::Path;
use std::process::Command;

pub use super::child::{spawn, Proc};
use super::PASSWORD;

/// Starts the real binary on a free port; returns once it prints its address.
pub fn spawn_server(dir: &Path, log: &Path) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_exphub"));
    cmd.args(["serve", "--host", "127.0.0.1", "--port", "0", "--sessions-dir"])
        .arg(dir)
        .env("EXPHUB_EXPERIMENTER_PASSWORD", PASSWORD)
        .env("EXPHUB_LOG", "info");
    spawn(cmd, log)
}

pub fn kill9(mut p: Proc) {
    p.child.kill().unwrap(); // SIGKILL
    p.child.wait().unwrap();
}
