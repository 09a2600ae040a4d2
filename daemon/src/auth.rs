//! Who may call the daemon: a bearer token per role, checked on every RPC.
//!
//! Two roles with distinct tokens: a *client* (submits runs, answers gates, cancels) and an
//! *executor* (attaches, receives tasks, returns results). Each gRPC service accepts only its
//! own role's token, so a leaked executor token cannot submit a run and a client token cannot
//! pose as an executor. A call without a valid token gets `UNAUTHENTICATED` and one log line.
//!
//! A long-running daemon keeps its tokens in files it creates with mode 0600 on first start
//! (printed once); the embedded mode makes ephemeral ones that never touch the disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::outcome::Outcome;

/// The metadata key a token travels in (`authorization: Bearer <token>`).
pub const HEADER: &str = "authorization";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Client,
    Executor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Executor => "executor",
        }
    }
}

/// The daemon's two tokens.
#[derive(Clone)]
pub struct Tokens {
    pub client: String,
    pub executor: String,
}

impl Tokens {
    /// Fresh tokens held in memory only (the embedded daemon's).
    pub fn ephemeral() -> Self {
        Self { client: generate(), executor: generate() }
    }

    /// The token files of a long-running daemon, created when absent. Returns the tokens and
    /// the files created now (their tokens are shown once, by the caller).
    pub fn from_files(client: &Path, executor: &Path) -> Result<(Self, Vec<PathBuf>), TokenError> {
        let mut created = Vec::new();
        let mut load = |path: &Path| -> Result<String, TokenError> {
            let (token, new) = load_or_create(path)?;
            if new {
                created.push(path.to_path_buf());
            }
            Ok(token)
        };
        let tokens = Self { client: load(client)?, executor: load(executor)? };
        if tokens.client == tokens.executor {
            return Err(TokenError {
                outcome: Outcome::TokenFileUnsafe,
                message: format!(
                    "{} and {} hold the same token: the client and executor roles need distinct tokens",
                    client.display(),
                    executor.display()
                ),
            });
        }
        Ok((tokens, created))
    }

    fn of(&self, role: Role) -> &str {
        match role {
            Role::Client => &self.client,
            Role::Executor => &self.executor,
        }
    }

    /// Whether an `authorization` header value carries `role`'s token; a refusal is logged
    /// with the caller's address and says whether the token was missing, the other role's or
    /// unknown. The gRPC gate and the dashboard both ask here.
    pub fn admit(&self, role: Role, header: Option<&str>, remote: &str) -> Result<(), (Outcome, String)> {
        let presented = header.and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
        let Some(presented) = presented else {
            tracing::warn!(%remote, service = role.as_str(), "refused a call without a token");
            return Err((Outcome::Unauthenticated, format!("the {} service needs a token", role.as_str())));
        };
        if same(presented.as_bytes(), self.of(role).as_bytes()) {
            return Ok(());
        }
        let other = match role {
            Role::Client => Role::Executor,
            Role::Executor => Role::Client,
        };
        if same(presented.as_bytes(), self.of(other).as_bytes()) {
            tracing::warn!(%remote, service = role.as_str(), "refused a call with the {} token", other.as_str());
            return Err((
                Outcome::TokenRoleRefused,
                format!("an {} token cannot call the {} service", other.as_str(), role.as_str()),
            ));
        }
        tracing::warn!(%remote, service = role.as_str(), "refused a call with an unknown token");
        Err((Outcome::Unauthenticated, "the token is not this daemon's".into()))
    }
}

#[derive(Debug)]
pub struct TokenError {
    pub outcome: Outcome,
    pub message: String,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.outcome, self.message)
    }
}

impl std::error::Error for TokenError {}

/// 244 random bits as 64 hex digits (two v4 UUIDs: the OS random source, through `uuid`).
pub fn generate() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// Read a token file, refusing one that others may read (a token is a password).
pub fn read_token_file(path: &Path) -> Result<String, TokenError> {
    let unsafe_file = |message: String| TokenError { outcome: Outcome::TokenFileUnsafe, message };
    let text = std::fs::read_to_string(path).map_err(|e| unsafe_file(format!("{}: {e}", path.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| unsafe_file(format!("{}: {e}", path.display())))?;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(unsafe_file(format!(
                "{} is readable or writable by others (mode {:o}): `chmod 600` it",
                path.display(),
                mode & 0o777
            )));
        }
    }
    let token = text.trim().to_string();
    if token.len() < 32 || !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(unsafe_file(format!("{} does not hold a token (32 or more printable characters)", path.display())));
    }
    Ok(token)
}

/// The token a client or executor presents: `USDTUNE_TOKEN`, else the named file, else
/// `default` (the local daemon's file of that role) when it exists. None: no token anywhere.
pub fn find_token(file: Option<&Path>, default: &Path) -> Result<Option<String>, TokenError> {
    if let Some(token) = std::env::var("USDTUNE_TOKEN").ok().filter(|t| !t.trim().is_empty()) {
        return Ok(Some(token.trim().to_string()));
    }
    match file {
        Some(file) => read_token_file(file).map(Some),
        None if default.is_file() => read_token_file(default).map(Some),
        None => Ok(None),
    }
}

/// The token in `path`, or a new one written there with mode 0600 (`true`: created now).
fn load_or_create(path: &Path) -> Result<(String, bool), TokenError> {
    if path.exists() {
        return read_token_file(path).map(|t| (t, false));
    }
    let failed = |e: std::io::Error| TokenError {
        outcome: Outcome::TokenFileUnsafe,
        message: format!("cannot create {}: {e}", path.display()),
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    let token = generate();
    let mut options = std::fs::OpenOptions::new();
    // create_new: two daemons starting at once cannot both write; 0600 from the first byte.
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(failed)?;
    std::io::Write::write_all(&mut file, format!("{token}\n").as_bytes()).map_err(failed)?;
    Ok((token, true))
}

/// Equal without leaking where two tokens differ through timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The server side: lets a call through only with `role`'s token.
#[derive(Clone)]
pub struct Gate {
    tokens: Arc<Tokens>,
    role: Role,
}

impl Gate {
    pub fn new(tokens: Arc<Tokens>, role: Role) -> Self {
        Self { tokens, role }
    }
}

impl Interceptor for Gate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let header = request.metadata().get(HEADER).and_then(|v| v.to_str().ok());
        let remote = request.remote_addr().map(|a| a.to_string()).unwrap_or_else(|| "unknown".into());
        match self.tokens.admit(self.role, header, &remote) {
            Ok(()) => Ok(request),
            Err((outcome, message)) => Err(outcome.status(message)),
        }
    }
}

pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// `None`: calls go out without a token (the daemon refuses them with a clear code).
    pub fn new(token: Option<&str>) -> Result<Self, TokenError> {
        let value = token
            .map(|t| {
                format!("Bearer {t}").parse::<MetadataValue<Ascii>>().map_err(|_| TokenError {
                    outcome: Outcome::TokenFileUnsafe,
                    message: "the token holds characters a gRPC header cannot carry".into(),
                })
            })
            .transpose()?;
        Ok(Self(value))
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert(HEADER, value.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call_with(header: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(h) = header {
            request.metadata_mut().insert(HEADER, h.parse().unwrap());
        }
        request
    }

    fn code_of(status: Status) -> (tonic::Code, String) {
        (status.code(), status.message().split(':').next().unwrap().to_string())
    }

    #[test]
    fn each_service_takes_only_its_own_role_token() {
        let tokens = Arc::new(Tokens::ephemeral());
        let mut client = Gate::new(tokens.clone(), Role::Client);
        let mut executor = Gate::new(tokens.clone(), Role::Executor);
        assert!(client.call(call_with(Some(&format!("Bearer {}", tokens.client)))).is_ok());
        assert!(executor.call(call_with(Some(&format!("Bearer {}", tokens.executor)))).is_ok());
        let refused = code_of(client.call(call_with(Some(&format!("Bearer {}", tokens.executor)))).unwrap_err());
        assert_eq!(refused, (tonic::Code::PermissionDenied, Outcome::TokenRoleRefused.code().to_string()));
        let refused = code_of(executor.call(call_with(Some(&format!("Bearer {}", tokens.client)))).unwrap_err());
        assert_eq!(refused, (tonic::Code::PermissionDenied, Outcome::TokenRoleRefused.code().to_string()));
        for header in [None, Some("Bearer "), Some("Bearer nope"), Some(tokens.client.as_str())] {
            let refused = code_of(client.call(call_with(header)).unwrap_err());
            assert_eq!(refused, (tonic::Code::Unauthenticated, Outcome::Unauthenticated.code().to_string()));
        }
    }

    #[test]
    fn token_files_are_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (client, executor) = (dir.path().join("a/client.token"), dir.path().join("executor.token"));
        let (first, created) = Tokens::from_files(&client, &executor).unwrap();
        assert_eq!(created.len(), 2);
        assert_ne!(first.client, first.executor);
        let (again, created) = Tokens::from_files(&client, &executor).unwrap();
        assert!(created.is_empty());
        assert_eq!((again.client, again.executor), (first.client, first.executor));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&client).unwrap().permissions().mode() & 0o777, 0o600);
            std::fs::set_permissions(&client, std::fs::Permissions::from_mode(0o644)).unwrap();
            let refused = Tokens::from_files(&client, &executor).err().unwrap();
            assert_eq!(refused.outcome, Outcome::TokenFileUnsafe);
            assert!(refused.message.contains("chmod 600"), "{}", refused.message);
        }
    }

    #[test]
    fn comparison_needs_every_byte() {
        assert!(same(b"abcdef", b"abcdef"));
        assert!(!same(b"abcdef", b"abcdeg"));
        assert!(!same(b"abcdef", b"abcde"));
    }
}
