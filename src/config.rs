//! One [`Config`], resolved once at start-up from flags, `EXPHUB_*` environment variables and
//! an optional JSON config file (in that order of precedence), validated, then immutable.
//!
//! The config file may be SynthARium's own `config.json`: its `host`, `port`,
//! `experimenter_password`, `https`, `ssl_cert`, `ssl_key`, `environment` (`"dev"` allows
//! every origin, as SynthARium's permissive CORS does) and `serve_frontend` (serve the build
//! at `../frontend/build` from the config file's directory) keys are understood; its other
//! keys are ignored and listed in [`Config::ignored_keys`] (logged once logging runs);
//! exphub's own keys are listed in [`FileConfig`].

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::peer::{IceServer, RtcSettings};

#[derive(Debug, Parser)]
#[command(
    name = "exphub",
    version,
    about = "Live video-call experiments for behavioural research (SynthARium-compatible server)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start-up
pub enum Command {
    /// Serve the hub (the default).
    Serve(ServeArgs),
    /// Work with session files.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Write one archive (tar) of a session's research data: the session file, manifest.json,
    /// events.jsonl and every recording.
    Export {
        session_id: String,
        /// Where to write the archive ("-": standard output) [default: <SESSION_ID>.tar].
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// Directory of session files [default: sessions, or EXPHUB_SESSIONS_DIR].
        #[arg(long, env = "EXPHUB_SESSIONS_DIR")]
        sessions_dir: Option<PathBuf>,
        /// Build the archive from this object store's copies (single-node layout:
        /// sessions/<SESSION_ID>/...) instead of the local directory.
        #[arg(long, env = "EXPHUB_OBJECT_STORE", value_name = "URL")]
        object_store: Option<String>,
    },
    /// Recompute a session's group filter results from its recorded raw files, with the same
    /// code and parameters as the live run, into `<session>/group_results.run-<N>.jsonl`; or,
    /// with `--faces`, analyse the faces in every recorded raw video frame into
    /// `<session>/processed/<participant>.run-<N>.csv` (OpenFace's columns).
    Analyze {
        session_id: String,
        /// The run (a session can be run more than once) [default: the last one; with --faces:
        /// every run].
        #[arg(long)]
        run: Option<u32>,
        /// Face analysis of the raw video instead (what POST_PROCESSING_VIDEO does); rewrites
        /// existing CSVs.
        #[arg(long, conflicts_with = "out")]
        faces: bool,
        /// Where to write the results ("-": standard output).
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// Directory of session files [default: sessions, or EXPHUB_SESSIONS_DIR].
        #[arg(long, env = "EXPHUB_SESSIONS_DIR")]
        sessions_dir: Option<PathBuf>,
    },
    /// Cluster mode: tell a running node to drain. It takes no new experiments (they are
    /// placed on other nodes), its running experiments go on and their participants can still
    /// join; when the last one has ended (or after --drain-timeout) the node leaves the cluster
    /// and its process exits 0. The request is signed with EXPHUB_CLUSTER_SECRET, so it works
    /// from any machine that reaches the node's internal API.
    Drain {
        /// The node's internal API, as in its --internal-url (e.g. http://10.0.0.1:9081).
        #[arg(long, env = "EXPHUB_INTERNAL_URL")]
        internal_url: String,
        /// Seconds to wait for the running experiments before leaving anyway [default: 7200].
        #[arg(long, value_name = "SECS")]
        drain_timeout: Option<f64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// Check every session file in DIR (default: the sessions directory) and say what is wrong.
    Validate { dir: Option<PathBuf> },
    /// Cluster mode: copy every session file of DIR into the cluster database, keeping ids (an
    /// id already there is refused unless --replace). DIR is only read.
    Import {
        dir: PathBuf,
        /// Overwrite sessions that are already in the database.
        #[arg(long)]
        replace: bool,
        /// The cluster database (postgres://user@host:port/db).
        #[arg(long, env = "EXPHUB_CLUSTER_DB", value_name = "URL", hide_env_values = true)]
        cluster_db: String,
    },
    /// Cluster mode: write every session of the cluster database to DIR as session files
    /// (`<id>.json`, which `exphub serve` without a database loads).
    Dump {
        dir: PathBuf,
        /// The cluster database (postgres://user@host:port/db).
        #[arg(long, env = "EXPHUB_CLUSTER_DB", value_name = "URL", hide_env_values = true)]
        cluster_db: String,
    },
}

/// Every setting of `exphub serve`. Each has an `EXPHUB_*` environment variable.
#[derive(Debug, Args, Clone, Default)]
pub struct ServeArgs {
    /// Address to listen on for HTTP(S) [default: 127.0.0.1].
    #[arg(long, env = "EXPHUB_HOST")]
    pub host: Option<IpAddr>,
    /// Port to listen on (0 picks a free one) [default: 8080].
    #[arg(long, env = "EXPHUB_PORT")]
    pub port: Option<u16>,
    /// Directory of session files [default: sessions].
    #[arg(long, env = "EXPHUB_SESSIONS_DIR")]
    pub sessions_dir: Option<PathBuf>,
    /// JSON config file (exphub's keys or SynthARium's config.json).
    #[arg(long, env = "EXPHUB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Experimenter password. Prefer the environment variable, which stays out of shell
    /// history. Without one, a random password is generated and printed at start-up.
    #[arg(long, env = "EXPHUB_EXPERIMENTER_PASSWORD", hide_env_values = true)]
    pub experimenter_password: Option<String>,
    /// TLS certificate chain (PEM). Browsers only allow cameras on https or localhost.
    #[arg(long, env = "EXPHUB_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "EXPHUB_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// STUN/TURN server URL(s), comma-separated (e.g. stun:stun.example.org:3478,turn:turn.example.org:3478).
    #[arg(long, env = "EXPHUB_ICE_SERVERS", value_delimiter = ',')]
    pub ice_servers: Option<Vec<String>>,
    /// Username for the TURN server(s).
    #[arg(long, env = "EXPHUB_TURN_USERNAME")]
    pub turn_username: Option<String>,
    /// Credential for the TURN server(s).
    #[arg(long, env = "EXPHUB_TURN_CREDENTIAL", hide_env_values = true)]
    pub turn_credential: Option<String>,
    /// Public IP(s) to advertise in ICE candidates when behind 1:1 NAT, comma-separated.
    #[arg(long, env = "EXPHUB_PUBLIC_IP", value_delimiter = ',')]
    pub public_ip: Option<Vec<String>>,
    /// UDP port range for media, e.g. 50000-50999 (one port per peer connection) [default: ephemeral].
    #[arg(long, env = "EXPHUB_UDP_PORTS")]
    pub udp_ports: Option<String>,
    /// Address the media sockets bind to [default: the --host address, or all interfaces if that is a wildcard].
    #[arg(long, env = "EXPHUB_RTC_IP")]
    pub rtc_ip: Option<IpAddr>,
    /// Log filter (tracing env-filter syntax) [default: info].
    #[arg(long, env = "EXPHUB_LOG")]
    pub log: Option<String>,
    /// Seconds a client has to send a request's head, counted from when the server starts
    /// waiting for it (so also how long an idle keep-alive connection is kept) [default: 10].
    #[arg(long, env = "EXPHUB_HTTP_HEADER_TIMEOUT", value_name = "SECS")]
    pub http_header_timeout: Option<f64>,
    /// Seconds a request body may take to arrive in full [default: 30].
    #[arg(long, env = "EXPHUB_HTTP_BODY_TIMEOUT", value_name = "SECS")]
    pub http_body_timeout: Option<f64>,
    /// Seconds without a byte moving either way after which an HTTP connection is closed (a
    /// stalled upload, a client that stopped reading) [default: 60].
    #[arg(long, env = "EXPHUB_HTTP_IDLE_TIMEOUT", value_name = "SECS")]
    pub http_idle_timeout: Option<f64>,
    /// Most HTTP(S) connections open at once; beyond it a new connection gets a 503 and is
    /// closed [default: a quarter of the open-file limit, between 64 and 1024].
    #[arg(long, env = "EXPHUB_HTTP_MAX_CONNECTIONS", value_name = "N")]
    pub http_max_connections: Option<usize>,
    /// Origins whose pages may call this server (CORS), comma-separated; `*` allows every
    /// origin [default: none; SynthARium's `"environment": "dev"` means `*`].
    #[arg(long, env = "EXPHUB_ALLOW_ORIGINS", value_delimiter = ',', value_name = "ORIGINS")]
    pub allow_origins: Option<Vec<String>>,
    /// Serve another web frontend's build (e.g. SynthARium's `frontend/build`) at `/`, with
    /// its page routes falling back to its index.html; exphub's own app moves to `/exphub/`.
    #[arg(long, env = "EXPHUB_FRONTEND_DIR", value_name = "DIR")]
    pub frontend_dir: Option<PathBuf>,
    /// Where the face-analysis models are (`make models` puts them in ./models) [default: the
    /// first of ./models and ../models that holds them].
    #[arg(long, env = "EXPHUB_MODELS_DIR", value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
    /// Cluster mode: several nodes share this PostgreSQL (postgres://user@host:port/db); needs
    /// EXPHUB_CLUSTER_SECRET. Without it exphub is a single node [default: off].
    #[arg(long, env = "EXPHUB_CLUSTER_DB", value_name = "URL", hide_env_values = true)]
    pub cluster_db: Option<String>,
    /// Cluster mode: this node's id [default: the host name, a dash and six random hex digits, new at every start].
    #[arg(long, env = "EXPHUB_NODE_ID")]
    pub node_id: Option<String>,
    /// Cluster mode: address of the internal API other nodes call [default: the --host address, any free port].
    #[arg(long, env = "EXPHUB_INTERNAL_ADDR")]
    pub internal_addr: Option<SocketAddr>,
    /// Cluster mode: the internal API's URL as other nodes reach it [default: http:// and the bound internal address].
    #[arg(long, env = "EXPHUB_INTERNAL_URL")]
    pub internal_url: Option<String>,
    /// Cluster mode: predicted CPU this node accepts, in millicores [default: 750 per core].
    #[arg(long, env = "EXPHUB_CAPACITY_MILLICORES")]
    pub capacity_millicores: Option<f32>,
    /// Cluster mode: place by reserved load alone; the measured CPU is still shown at /metrics
    /// but sent to placement as 0 (for toy capacities in tests, or when the cost model is
    /// trusted more than the measurement).
    #[arg(long, env = "EXPHUB_IGNORE_MEASURED_CPU")]
    pub ignore_measured_cpu: bool,
    /// Copy recordings to an object store: file:///DIR, or s3://BUCKET/PREFIX?endpoint=URL&region=NAME
    /// (credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY); local copies are kept [default: off].
    #[arg(long, env = "EXPHUB_OBJECT_STORE", value_name = "URL")]
    pub object_store: Option<String>,
}

/// Keys of the JSON config file (all optional).
#[derive(Debug, Default, Deserialize)]
pub struct FileConfig {
    pub host: Option<IpAddr>,
    pub port: Option<u16>,
    pub sessions_dir: Option<PathBuf>,
    pub experimenter_password: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// SynthARium: serve https with `ssl_cert`/`ssl_key`.
    pub https: Option<bool>,
    pub ssl_cert: Option<PathBuf>,
    pub ssl_key: Option<PathBuf>,
    pub ice_servers: Option<Vec<String>>,
    pub turn_username: Option<String>,
    pub turn_credential: Option<String>,
    pub public_ip: Option<Vec<String>>,
    pub udp_ports: Option<String>,
    pub rtc_ip: Option<IpAddr>,
    pub log: Option<String>,
    pub http_header_timeout: Option<f64>,
    pub http_body_timeout: Option<f64>,
    pub http_idle_timeout: Option<f64>,
    pub http_max_connections: Option<usize>,
    pub allow_origins: Option<Vec<String>>,
    pub frontend_dir: Option<PathBuf>,
    pub models_dir: Option<PathBuf>,
    /// SynthARium: `"dev"` enables permissive CORS.
    pub environment: Option<String>,
    /// SynthARium: serve `../frontend/build` (relative to the config file).
    pub serve_frontend: Option<bool>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// Where the experimenter password came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    Configured,
    Generated,
}

/// The validated configuration of a running server.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub sessions_dir: PathBuf,
    pub experimenter_password: String,
    pub password_source: PasswordSource,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub rtc: RtcSettings,
    pub log: String,
    /// Largest data-channel frame accepted; larger → 413. The server advertises 256 KiB
    /// (`a=max-message-size`, the most its WebRTC stack carries); a value above that has no
    /// effect, since larger frames never reach the server.
    pub max_message_bytes: usize,
    /// Timeouts and the connection cap of the HTTP(S) server.
    pub http: HttpLimits,
    /// Which cross-origin pages may call the server.
    pub allow_origins: AllowOrigins,
    /// Another frontend's build served at `/` (exphub's app then lives under `/exphub/`).
    pub frontend_dir: Option<PathBuf>,
    /// The face-analysis models' directory, if configured (else the default places).
    pub models_dir: Option<PathBuf>,
    /// Keys of the config file that exphub does not use (reported at start-up).
    pub ignored_keys: Vec<String>,
    /// Settings that could not take effect, reported at start-up.
    pub warnings: Vec<String>,
    /// Cluster mode (`--cluster-db`); `None`: a single node.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// Where recordings are copied (`--object-store`); `None`: they stay local only.
    pub object_store: Option<crate::record::store::StoreUrl>,
}

/// The origins allowed to call the server from a page of another origin (CORS).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AllowOrigins {
    /// Same-origin only (no CORS headers).
    #[default]
    None,
    /// Every origin (`*`; SynthARium's `"environment": "dev"`).
    Any,
    /// These origins exactly (`scheme://host[:port]`, compared without a trailing slash).
    List(Vec<String>),
}

impl AllowOrigins {
    fn from_list(list: Vec<String>) -> Self {
        let list: Vec<String> =
            list.iter().map(|o| o.trim().trim_end_matches('/').to_owned()).filter(|o| !o.is_empty()).collect();
        if list.iter().any(|o| o == "*") {
            AllowOrigins::Any
        } else if list.is_empty() {
            AllowOrigins::None
        } else {
            AllowOrigins::List(list)
        }
    }

    /// Whether a page of `origin` may call the server.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            AllowOrigins::None => false,
            AllowOrigins::Any => true,
            AllowOrigins::List(l) => l.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }
}

/// What one HTTP client may hold of the server: time and connections.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpLimits {
    /// A request's head must be complete this long after the server starts waiting for it
    /// (a new connection, or the end of the previous response on a keep-alive connection).
    pub header_timeout: Duration,
    /// A request's body must be complete this long after its head (408 otherwise).
    pub body_timeout: Duration,
    /// A connection on which no byte moves either way for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; more get a 503 and are closed.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: default_max_connections(),
        }
    }
}

/// A quarter of the open-file soft limit (each peer connection needs descriptors too, and
/// session writes and recordings must never run out), between 64 and 1024.
pub fn default_max_connections() -> usize {
    let limit = fd_soft_limit().unwrap_or(1024);
    (limit / 4).clamp(64, 1024) as usize
}

/// The process's open-file soft limit.
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every platform
pub fn fd_soft_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into the struct we pass; no other memory is touched.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 {
            return Some(r.rlim_cur as u64);
        }
    }
    None
}

/// Raises the open-file soft limit to the hard limit (systemd and most shells start programs
/// at 1,024, which idle HTTP clients could use up). Returns (before, after).
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every platform
pub fn raise_fd_limit() -> std::io::Result<(u64, u64)> {
    #[cfg(unix)]
    {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit read and write only the struct we pass.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let before = r.rlim_cur as u64;
        if r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            // SAFETY: as above.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok((before, r.rlim_cur as u64))
    }
    #[cfg(not(unix))]
    Ok((0, 0))
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("config file {0} is not valid: {1}")]
    Parse(PathBuf, serde_json::Error),
    #[error("--object-store {0}")]
    ObjectStore(String),
    #[error("invalid UDP port range {0:?}: expected FIRST-LAST, e.g. 50000-50999")]
    PortRange(String),
    #[error("TLS needs both a certificate and a key")]
    TlsHalf,
    #[error("{0} does not exist")]
    Missing(PathBuf),
    #[error("{0} must be a positive number of seconds, got {1}")]
    Seconds(&'static str, f64),
    #[error("http_max_connections must be at least 1")]
    MaxConnections,
    #[error("the frontend directory {0} has no index.html")]
    FrontendDir(PathBuf),
    #[error("cluster mode: {0}")]
    Cluster(String),
}

impl Config {
    /// Resolves flags/env (`args`) over the config file over defaults.
    pub fn resolve(args: &ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError::Read(p.clone(), e))?;
                serde_json::from_str(&text).map_err(|e| ConfigError::Parse(p.clone(), e))?
            }
            None => FileConfig::default(),
        };
        let ignored_keys: Vec<String> = file.other.keys().cloned().collect();
        let allow_origins = match args.allow_origins.clone().or(file.allow_origins) {
            Some(list) => AllowOrigins::from_list(list),
            None if file.environment.as_deref() == Some("dev") => AllowOrigins::Any,
            None => AllowOrigins::None,
        };
        // SynthARium's `serve_frontend` serves `frontend/build` next to `backend/`, where its
        // config.json lives.
        let synth_build = || {
            let dir = args.config.as_deref().and_then(Path::parent).unwrap_or(Path::new("."));
            dir.join("..").join("frontend").join("build")
        };
        let mut warnings = Vec::new();
        let frontend_dir = match args.frontend_dir.clone().or(file.frontend_dir) {
            Some(d) if !d.join("index.html").is_file() => return Err(ConfigError::FrontendDir(d)),
            Some(d) => Some(d),
            // SynthARium's shipped config.json says serve_frontend: true; without a build,
            // exphub serves its own app (as before) and says so.
            None if file.serve_frontend == Some(true) => {
                let d = synth_build();
                if d.join("index.html").is_file() {
                    Some(d)
                } else {
                    warnings.push(format!(
                        "serve_frontend is set but {} has no index.html (build the frontend first); serving exphub's own app",
                        d.display()
                    ));
                    None
                }
            }
            None => None,
        };
        let host = args.host.or(file.host).unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let port = args.port.or(file.port).unwrap_or(8080);
        let sessions_dir = args.sessions_dir.clone().or(file.sessions_dir).unwrap_or_else(|| PathBuf::from("sessions"));
        let (experimenter_password, password_source) =
            match args.experimenter_password.clone().or(file.experimenter_password) {
                Some(p) if !p.is_empty() => (p, PasswordSource::Configured),
                _ => (generate_password(), PasswordSource::Generated),
            };
        let file_tls = if file.https == Some(true) {
            (file.ssl_cert.clone(), file.ssl_key.clone())
        } else {
            (file.tls_cert.clone(), file.tls_key.clone())
        };
        let tls = match (args.tls_cert.clone().or(file_tls.0), args.tls_key.clone().or(file_tls.1)) {
            (Some(c), Some(k)) => {
                for p in [&c, &k] {
                    if !p.exists() {
                        return Err(ConfigError::Missing(p.clone()));
                    }
                }
                Some((c, k))
            }
            (None, None) => None,
            _ => return Err(ConfigError::TlsHalf),
        };
        let port_range = match args.udp_ports.clone().or(file.udp_ports) {
            Some(s) => Some(parse_port_range(&s)?),
            None => None,
        };
        let username = args.turn_username.clone().or(file.turn_username).unwrap_or_default();
        let credential = args.turn_credential.clone().or(file.turn_credential).unwrap_or_default();
        let ice_servers = args
            .ice_servers
            .clone()
            .or(file.ice_servers)
            .unwrap_or_default()
            .into_iter()
            .filter(|u| !u.trim().is_empty())
            .map(|url| {
                let turn = url.starts_with("turn");
                IceServer {
                    urls: vec![url.trim().to_owned()],
                    username: if turn { username.clone() } else { String::new() },
                    credential: if turn { credential.clone() } else { String::new() },
                }
            })
            .collect();
        let rtc_ip = args.rtc_ip.or(file.rtc_ip).unwrap_or(host);
        let rtc = RtcSettings {
            bind_ip: rtc_ip,
            port_range,
            ice_servers,
            nat_1to1_ips: args.public_ip.clone().or(file.public_ip).unwrap_or_default(),
            gather_timeout: Duration::from_secs(5),
        };
        let seconds = |name: &'static str, v: Option<f64>, default: Duration| match v {
            None => Ok(default),
            Some(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
            Some(s) => Err(ConfigError::Seconds(name, s)),
        };
        let d = HttpLimits::default();
        let http = HttpLimits {
            header_timeout: seconds(
                "http_header_timeout",
                args.http_header_timeout.or(file.http_header_timeout),
                d.header_timeout,
            )?,
            body_timeout: seconds(
                "http_body_timeout",
                args.http_body_timeout.or(file.http_body_timeout),
                d.body_timeout,
            )?,
            idle_timeout: seconds(
                "http_idle_timeout",
                args.http_idle_timeout.or(file.http_idle_timeout),
                d.idle_timeout,
            )?,
            max_connections: match args.http_max_connections.or(file.http_max_connections) {
                Some(0) => return Err(ConfigError::MaxConnections),
                Some(n) => n,
                None => d.max_connections,
            },
        };
        let cluster = cluster_config(args, host)?;
        let object_store = match args.object_store.as_deref().filter(|u| !u.trim().is_empty()) {
            Some(u) => Some(crate::record::store::StoreUrl::parse(u).map_err(ConfigError::ObjectStore)?),
            None => None,
        };
        Ok(Config {
            cluster,
            object_store,
            http,
            listen: SocketAddr::new(host, port),
            sessions_dir,
            experimenter_password,
            password_source,
            tls,
            rtc,
            log: args.log.clone().or(file.log).unwrap_or_else(|| "info".to_owned()),
            max_message_bytes: crate::peer::MAX_MESSAGE_SIZE as usize,
            allow_origins,
            frontend_dir,
            models_dir: args.models_dir.clone().or(file.models_dir),
            ignored_keys,
            warnings,
        })
    }

    /// A configuration for tests: loopback, a free port, the given directory and password.
    pub fn for_tests(sessions_dir: &Path, password: &str) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            sessions_dir: sessions_dir.to_owned(),
            experimenter_password: password.to_owned(),
            password_source: PasswordSource::Configured,
            tls: None,
            rtc: RtcSettings::default(),
            log: "warn".to_owned(),
            max_message_bytes: crate::peer::MAX_MESSAGE_SIZE as usize,
            http: HttpLimits::default(),
            allow_origins: AllowOrigins::None,
            frontend_dir: None,
            models_dir: None,
            ignored_keys: Vec::new(),
            warnings: Vec::new(),
            cluster: None,
            object_store: None,
        }
    }
}

/// The cluster's secret from `EXPHUB_CLUSTER_SECRET` (environment only, at least 16
/// characters): the nodes sign internal requests with it, and so does `exphub drain`.
pub fn cluster_secret() -> Result<String, ConfigError> {
    let secret = std::env::var("EXPHUB_CLUSTER_SECRET").unwrap_or_default();
    if secret.len() < 16 {
        return Err(ConfigError::Cluster(
            "EXPHUB_CLUSTER_SECRET must be set to the same secret (at least 16 characters) on every node".into(),
        ));
    }
    Ok(secret)
}

/// Cluster mode's settings (flags and environment only), if `--cluster-db` is given.
fn cluster_config(args: &ServeArgs, host: IpAddr) -> Result<Option<crate::cluster::ClusterConfig>, ConfigError> {
    let Some(db_url) = args.cluster_db.clone().filter(|u| !u.trim().is_empty()) else { return Ok(None) };
    let secret = cluster_secret()?;
    let internal_addr = args.internal_addr.unwrap_or(SocketAddr::new(host, 0));
    if internal_addr.ip().is_unspecified() && args.internal_url.is_none() {
        return Err(ConfigError::Cluster(format!(
            "the internal address {internal_addr} is a wildcard: give --internal-url, the URL other nodes reach it at"
        )));
    }
    let capacity_millicores = match args.capacity_millicores {
        Some(c) if c.is_finite() && c > 0.0 => c,
        Some(c) => return Err(ConfigError::Cluster(format!("--capacity-millicores must be positive, got {c}"))),
        None => crate::cluster::default_capacity(),
    };
    Ok(Some(crate::cluster::ClusterConfig {
        db_url,
        node_id: args.node_id.clone().unwrap_or_else(crate::cluster::default_node_id),
        internal_addr,
        internal_url: args.internal_url.clone(),
        capacity_millicores,
        measured_cpu: !args.ignore_measured_cpu,
        secret: secret.into_bytes(),
    }))
}

fn parse_port_range(s: &str) -> Result<RangeInclusive<u16>, ConfigError> {
    let err = || ConfigError::PortRange(s.to_owned());
    let (a, b) = s.split_once('-').ok_or_else(err)?;
    let a: u16 = a.trim().parse().map_err(|_| err())?;
    let b: u16 = b.trim().parse().map_err(|_| err())?;
    if a == 0 || b < a {
        return Err(err());
    }
    Ok(a..=b)
}

/// 20 characters from an unambiguous alphabet (~115 bits).
fn generate_password() -> String {
    const ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes.iter().take(20).map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

/// Constant-time string equality (the password check must not leak a prefix length).
///
/// Both sides are hashed (SHA-256) and the two fixed-length digests are compared with an XOR
/// fold: the time depends on the lengths only through hashing, never on where the strings
/// differ, and strings of different lengths can never compare equal.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let sha = |s: &str| ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    let (da, db) = (sha(a), sha(b));
    let diff = da.as_ref().iter().zip(db.as_ref()).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("50000-50010").unwrap(), 50000..=50010);
        assert!(parse_port_range("5-1").is_err());
        assert!(parse_port_range("abc").is_err());
        assert!(parse_port_range("0-10").is_err());
    }

    #[test]
    fn constant_time_equality() {
        assert!(constant_time_eq("secret", "secret"));
        assert!(!constant_time_eq("secret", "secreT"));
        assert!(!constant_time_eq("secret", "secret2"));
        assert!(!constant_time_eq("", "x"));
        assert!(constant_time_eq("", ""));
    }

    #[test]
    fn constant_time_equality_sees_every_length_difference() {
        // NUL padding used to make these equal: only the low 16 bits of the length difference
        // were compared and the shorter side was padded with 0.
        for nuls in [1, 255, 256, 65_535, 65_536, 65_537, 131_072] {
            let padded = format!("pw{}", "\0".repeat(nuls));
            assert!(!constant_time_eq(&padded, "pw"), "{nuls} NULs");
            assert!(!constant_time_eq("pw", &padded), "{nuls} NULs, other side");
        }
        assert!(!constant_time_eq("pw", "pw\0"));
        assert!(!constant_time_eq("\0", ""));
        assert!(!constant_time_eq("pwpw", "pw"));
        let long = "x".repeat(100_000);
        assert!(constant_time_eq(&long, &long.clone()));
        assert!(!constant_time_eq(&long, &"x".repeat(100_001)));
    }

    #[test]
    fn http_limits_from_flags_with_defaults_and_checks() {
        let c = Config::resolve(&ServeArgs::default()).unwrap();
        assert_eq!(c.http, HttpLimits::default());
        assert_eq!(c.http.header_timeout, Duration::from_secs(10));
        assert!((64..=1024).contains(&c.http.max_connections));
        let args = ServeArgs {
            http_header_timeout: Some(2.5),
            http_body_timeout: Some(7.0),
            http_idle_timeout: Some(0.5),
            http_max_connections: Some(3),
            ..Default::default()
        };
        let c = Config::resolve(&args).unwrap();
        assert_eq!(c.http.header_timeout, Duration::from_millis(2500));
        assert_eq!(c.http.body_timeout, Duration::from_secs(7));
        assert_eq!(c.http.idle_timeout, Duration::from_millis(500));
        assert_eq!(c.http.max_connections, 3);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e9] {
            let args = ServeArgs { http_body_timeout: Some(bad), ..Default::default() };
            let e = Config::resolve(&args).unwrap_err().to_string();
            assert!(e.starts_with("http_body_timeout must be a positive number of seconds"), "{e}");
        }
        let args = ServeArgs { http_max_connections: Some(0), ..Default::default() };
        assert!(Config::resolve(&args).is_err());
    }

    #[test]
    fn generated_passwords_differ() {
        let a = generate_password();
        assert_eq!(a.len(), 20);
        assert_ne!(a, generate_password());
    }

    #[test]
    fn synth_config_file_and_precedence() {
        let root = std::env::temp_dir().join(format!("exphub-cfg-{}", uuid::Uuid::new_v4()));
        let dir = root.join("backend");
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("config.json");
        std::fs::write(&f, r#"{"experimenter_password":"filepw","host":"127.0.0.1","port":9000,"environment":"dev","serve_frontend":true,"https":false,"log":"INFO","ping_subprocesses":0.0}"#).unwrap();
        let args = ServeArgs { config: Some(f.clone()), port: Some(9100), ..Default::default() };
        // serve_frontend without a build: exphub's own app, and a warning naming the directory.
        let c = Config::resolve(&args).unwrap();
        assert_eq!(c.frontend_dir, None);
        assert!(c.warnings[0].contains("frontend") && c.warnings[0].contains("has no index.html"), "{:?}", c.warnings);
        // An explicit frontend directory without index.html is an error.
        let bad = ServeArgs { frontend_dir: Some(root.clone()), ..Default::default() };
        assert!(Config::resolve(&bad).unwrap_err().to_string().ends_with("has no index.html"));
        let build = root.join("frontend").join("build");
        std::fs::create_dir_all(&build).unwrap();
        std::fs::write(build.join("index.html"), "<!doctype html>").unwrap();
        let c = Config::resolve(&args).unwrap();
        assert_eq!(c.listen.port(), 9100, "flag beats file");
        assert_eq!(c.experimenter_password, "filepw");
        assert_eq!(c.password_source, PasswordSource::Configured);
        assert_eq!(c.allow_origins, AllowOrigins::Any, "environment dev = permissive CORS");
        assert_eq!(c.frontend_dir, Some(dir.join("..").join("frontend").join("build")));
        assert_eq!(c.ignored_keys, vec!["ping_subprocesses".to_owned()]);
        // An explicit list beats the file's environment.
        let args = ServeArgs {
            config: Some(f.clone()),
            allow_origins: Some(vec!["https://lab.example.org/".into(), " http://127.0.0.1:5173".into()]),
            ..Default::default()
        };
        let c = Config::resolve(&args).unwrap();
        assert!(c.allow_origins.allows("https://lab.example.org"));
        assert!(c.allow_origins.allows("http://127.0.0.1:5173"));
        assert!(!c.allow_origins.allows("http://localhost:5173"));
        std::fs::remove_dir_all(root).unwrap();
    }
}
