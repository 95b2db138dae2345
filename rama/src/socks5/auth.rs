//! Username/password authentication (RFC 1929) for [`Server`](super::Server): the credentials a
//! client presents, the check that decides, and the [`User`] recorded on the connection.
//!
//! The check is any tower `Service<Credentials, Response = bool>` that is `Clone` (each
//! connection checks on its own clone, after `poll_ready`), so it can be async: a database, a
//! file, a remote service. Ready-made: [`Users`], a fixed set; [`from_fn`], a plain closure.
//!
//! ```
//! use rama::socks5::{self, auth};
//! use std::convert::Infallible;
//!
//! // A fixed set of users.
//! let server = socks5::Server::new().with_auth(auth::Users::new([("alice", "s3cret")]));
//! // A closure.
//! let server = socks5::Server::new().with_auth(auth::from_fn(|c| c.username() == "bob"));
//! // An async check.
//! let server = socks5::Server::new().with_auth(tower::service_fn(|c: auth::Credentials| async move {
//!     Ok::<_, Infallible>(c.password() == "from the database")
//! }));
//! ```

use crate::BoxError;
use pin_project_lite::pin_project;
use std::{
    collections::HashMap,
    convert::Infallible,
    fmt,
    future::{Future, Ready, ready},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};
use tower::{Service, ServiceExt, util::Oneshot};

/// The username and password a client presented.
#[derive(Clone)]
pub struct Credentials {
    username: String,
    password: String,
}

/// The user a connection authenticated as, recorded in its
/// [extensions](crate::ConnInfo::extensions) for later stages and logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User(Arc<str>);

/// A fixed set of username/password pairs: the check behind `--user NAME:PASSWORD`.
///
/// Cheap to clone (one reference count). Passwords are compared in constant time.
#[derive(Clone, Default)]
pub struct Users {
    users: Arc<HashMap<String, String>>,
}

/// The check made of a closure by [`from_fn`].
#[derive(Clone)]
pub struct FromFn<F> {
    f: F,
}

/// A check from a closure over the credentials.
pub fn from_fn<F>(f: F) -> FromFn<F>
where
    F: Fn(&Credentials) -> bool + Clone,
{
    FromFn { f }
}

/// What a [`Server`](super::Server) requires of its clients: [`NoAuth`] or [`Password`].
///
/// Implemented by rama; it is public because it appears in bounds.
pub trait Authenticator: Clone {
    /// The pending verdict.
    type Future: Future<Output = Result<bool, BoxError>>;

    /// Whether clients must present a username and password.
    fn required(&self) -> bool;

    /// Checks `credentials` (only called when [`required`](Self::required)).
    fn check(self, credentials: Credentials) -> Self::Future;
}

/// No authentication: every client may connect.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAuth;

/// Username/password authentication with the check `S`.
#[derive(Debug, Clone)]
pub struct Password<S> {
    check: S,
}

// ===== impl Credentials =====

impl Credentials {
    /// Credentials from their parts.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The username.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The password.
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

// ===== impl User =====

impl User {
    /// A user called `name`.
    pub fn new(name: &str) -> Self {
        Self(name.into())
    }

    /// The username.
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ===== impl Users =====

impl Users {
    /// The set of `(username, password)` pairs.
    pub fn new<U, P>(users: impl IntoIterator<Item = (U, P)>) -> Self
    where
        U: Into<String>,
        P: Into<String>,
    {
        Self {
            users: Arc::new(
                users
                    .into_iter()
                    .map(|(u, p)| (u.into(), p.into()))
                    .collect(),
            ),
        }
    }

    /// Parses `NAME:PASSWORD` entries (the password may contain `:`). A name or password
    /// of more than 255 bytes is refused: SOCKS5 carries no more (RFC 1929), and such a
    /// user could log in over HTTP only.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, BoxError> {
        let mut users = Vec::new();
        for entry in entries {
            let (name, password) = entry
                .split_once(':')
                .filter(|(name, _)| !name.is_empty())
                .ok_or_else(|| format!("`{entry}` is not NAME:PASSWORD"))?;
            if name.len() > 255 || password.len() > 255 {
                return Err(format!(
                    "user `{name}`: a name or password of more than 255 bytes, which SOCKS5 cannot carry"
                )
                .into());
            }
            users.push((name.to_owned(), password.to_owned()));
        }
        Ok(Self::new(users))
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `credentials` name a user with that password.
    pub fn contains(&self, credentials: &Credentials) -> bool {
        self.users
            .get(credentials.username())
            .is_some_and(|password| {
                constant_time_eq(password.as_bytes(), credentials.password().as_bytes())
            })
    }
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.users.keys()).finish()
    }
}

impl Service<Credentials> for Users {
    type Response = bool;
    type Error = Infallible;
    type Future = Ready<Result<bool, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, credentials: Credentials) -> Self::Future {
        ready(Ok(self.contains(&credentials)))
    }
}

/// Compares without an early exit, so the time taken does not tell how much of a password
/// was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ===== impl FromFn =====

impl<F> Service<Credentials> for FromFn<F>
where
    F: Fn(&Credentials) -> bool,
{
    type Response = bool;
    type Error = Infallible;
    type Future = Ready<Result<bool, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, credentials: Credentials) -> Self::Future {
        ready(Ok((self.f)(&credentials)))
    }
}

impl<F> fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromFn").finish_non_exhaustive()
    }
}

// ===== impl NoAuth, Password =====

impl Authenticator for NoAuth {
    type Future = Ready<Result<bool, BoxError>>;

    fn required(&self) -> bool {
        false
    }

    fn check(self, _: Credentials) -> Self::Future {
        ready(Ok(true))
    }
}

impl<S> Password<S> {
    pub(super) fn new(check: S) -> Self {
        Self { check }
    }
}

impl<S> Authenticator for Password<S>
where
    S: Service<Credentials, Response = bool> + Clone,
    S::Error: Into<BoxError>,
{
    type Future = Check<S>;

    fn required(&self) -> bool {
        true
    }

    fn check(self, credentials: Credentials) -> Self::Future {
        Check {
            inner: self.check.oneshot(credentials),
        }
    }
}

pin_project! {
    /// A pending password check: the check's own `poll_ready`, then its call.
    pub struct Check<S>
    where
        S: Service<Credentials>,
    {
        #[pin]
        inner: Oneshot<S, Credentials>,
    }
}

impl<S> Future for Check<S>
where
    S: Service<Credentials, Response = bool>,
    S::Error: Into<BoxError>,
{
    type Output = Result<bool, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx).map_err(Into::into)
    }
}

impl<S: Service<Credentials>> fmt::Debug for Check<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_check_name_and_password() {
        let users = Users::parse(["alice:s3:cret", "bob:pw"]).unwrap();
        assert!(users.contains(&Credentials::new("alice", "s3:cret")));
        assert!(!users.contains(&Credentials::new("alice", "pw")));
        assert!(!users.contains(&Credentials::new("carol", "pw")));
        assert!(Users::parse(["nopassword"]).is_err());
        assert!(Users::parse([":pw"]).is_err());
        // What SOCKS5 carries: 255 bytes of each.
        let (name, password) = ("n".repeat(255), "p".repeat(255));
        assert!(Users::parse([format!("{name}:{password}").as_str()]).is_ok());
        assert!(Users::parse([format!("{name}n:pw").as_str()]).is_err());
        assert!(Users::parse([format!("alice:{password}p").as_str()]).is_err());
        assert!(!format!("{:?}", Credentials::new("a", "secret")).contains("secret"));
    }
}
