//! A server process started by a test or a tool: killed and reaped on drop (also when a test
//! fails), its address read from what it prints.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
