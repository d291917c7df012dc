//! A throwaway PostgreSQL for the cluster tests and tools: Debian's `postgresql` (installed by
//! `make test-deps`), a new cluster in a temporary directory (data and socket), listening on a
//! free loopback port, stopped and removed on drop (also when a test fails). PostgreSQL refuses
//! to run as root, so as root `initdb` and `pg_ctl` run as the `postgres` user via `runuser`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Pg {
    dir: PathBuf,
    bin: PathBuf,
    #[allow(dead_code)] // for tools that print it
    pub port: u16,
    /// `postgres://exphub@127.0.0.1:<port>/postgres`
    pub url: String,
    /// The server's options (`pg_ctl -o`), for a restart.
    opts: String,
}

/// The newest installed PostgreSQL's bin directory (Debian keeps them versioned).
fn bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
        .filter(|(_, b)| b.join("initdb").is_file())
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, b)) => b,
        None => panic!("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run `make test-deps`"),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Pg {
    /// Starts a new cluster. `durable: false` turns fsync off (tests); `true` keeps the
    /// defaults (measurements).
    pub fn start(durable: bool) -> Pg {
        let bin = bin_dir();
        let dir = std::env::temp_dir().join(format!("exphub-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let fsync = if durable { "" } else { " -c fsync=off -c synchronous_commit=off" };
        let opts =
            format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200{fsync}", dir.display());
        let pg = Pg { dir, bin, port, url: format!("postgres://exphub@127.0.0.1:{port}/postgres"), opts };
        if is_root() {
            let ok = Command::new("chown").arg("postgres:postgres").arg(&pg.dir).status().unwrap().success();
            assert!(ok, "chown of {} to postgres", pg.dir.display());
        }
        let data = pg.dir.join("data");
        let out = pg.run("initdb", &["-D", data.to_str().unwrap(), "-A", "trust", "-U", "exphub", "--no-sync"]);
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        pg.start_again();
        pg
    }

    /// Starts the server (again) over its data directory.
    pub fn start_again(&self) {
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        let out = self.run(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-o", &self.opts, "-w", "-t", "60", "start"],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server (an outage: clients are cut off), keeping its data for
    /// [`Pg::start_again`].
    #[allow(dead_code)] // not every test file stops its database
    pub fn stop(&self) {
        let data = self.dir.join("data");
        let out = self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "-t", "60", "stop"]);
        assert!(out.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn run(&self, tool: &str, args: &[&str]) -> std::process::Output {
        let exe = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args).current_dir(&self.dir).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{tool}: {e}"))
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
