//! One [`Config`], resolved once at start-up from flags, `EXPHUB_*` environment variables and
//! an optional JSON config file (in that order of precedence), validated, then immutable.
//!
//! The config file may be SynthARium's own `config.json`: its `host`, `port`,
//! `experimenter_password`, `https`, `ssl_cert` and `ssl_key` keys are understood; its other
//! keys are ignored (with a log line), exphub's own keys are listed in [`FileConfig`].

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
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// Check every session file in DIR (default: the sessions directory) and say what is wrong.
    Validate { dir: Option<PathBuf> },
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
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("config file {0} is not valid: {1}")]
    Parse(PathBuf, serde_json::Error),
    #[error("invalid UDP port range {0:?}: expected FIRST-LAST, e.g. 50000-50999")]
    PortRange(String),
    #[error("TLS needs both a certificate and a key")]
    TlsHalf,
    #[error("{0} does not exist")]
    Missing(PathBuf),
}

impl Config {
    /// Resolves flags/env (`args`) over the config file over defaults.
    pub fn resolve(args: &ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError::Read(p.clone(), e))?;
                let f: FileConfig = serde_json::from_str(&text).map_err(|e| ConfigError::Parse(p.clone(), e))?;
                if !f.other.is_empty() {
                    let keys: Vec<_> = f.other.keys().cloned().collect();
                    tracing::info!(?keys, "config file keys not used by exphub ignored");
                }
                f
            }
            None => FileConfig::default(),
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
        Ok(Config {
            listen: SocketAddr::new(host, port),
            sessions_dir,
            experimenter_password,
            password_source,
            tls,
            rtc,
            log: args.log.clone().or(file.log).unwrap_or_else(|| "info".to_owned()),
            max_message_bytes: crate::peer::MAX_MESSAGE_SIZE as usize,
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
        }
    }
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
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = (a.len() ^ b.len()) as u8 | ((a.len() ^ b.len()) >> 8) as u8;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
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
    fn generated_passwords_differ() {
        let a = generate_password();
        assert_eq!(a.len(), 20);
        assert_ne!(a, generate_password());
    }

    #[test]
    fn synth_config_file_and_precedence() {
        let dir = std::env::temp_dir().join(format!("exphub-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("config.json");
        std::fs::write(&f, r#"{"experimenter_password":"filepw","host":"127.0.0.1","port":9000,"environment":"dev","serve_frontend":true,"https":false,"log":"INFO"}"#).unwrap();
        let args = ServeArgs { config: Some(f.clone()), port: Some(9100), ..Default::default() };
        let c = Config::resolve(&args).unwrap();
        assert_eq!(c.listen.port(), 9100, "flag beats file");
        assert_eq!(c.experimenter_password, "filepw");
        assert_eq!(c.password_source, PasswordSource::Configured);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
