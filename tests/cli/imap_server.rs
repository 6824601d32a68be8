//! A real IMAP server for the tests: Dovecot (Debian's dovecot-imapd),
//! started on a free loopback port with a configuration of its own in a
//! temporary folder, one user, and stopped when dropped.
//!
//! Without Dovecot on the machine the IMAP tests are skipped with a note,
//! unless `PATRON_TEST_DOVECOT` names the binary (as `.ci/run` does), in
//! which case a missing or broken server fails them.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;

pub const USER: &str = "bounces@shop.example";
pub const PASSWORD: &str = "imap-test-password";

pub struct Dovecot {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Dovecot {
    /// A running server, or `None` (with a note) when Dovecot is not installed and not required.
    pub fn start() -> Option<Dovecot> {
        let binary = match std::env::var_os("PATRON_TEST_DOVECOT") {
            Some(path) => PathBuf::from(path),
            None if Path::new("/usr/sbin/dovecot").exists() => PathBuf::from("/usr/sbin/dovecot"),
            None => {
                eprintln!("skipped: Dovecot is not installed (apt-get install dovecot-imapd; .ci/run does)");
                return None;
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = dir.path().join("dovecot.conf");
        std::fs::write(&config, configuration(dir.path(), port)).unwrap();
        std::fs::write(dir.path().join("passwd"), format!("{USER}:{{PLAIN}}{PASSWORD}\n")).unwrap();
        prepare_permissions(dir.path());
        let child = Command::new(&binary)
            .args(["-F", "-c"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let server = Dovecot { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "Dovecot did not listen on {port}:\n{}", server.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `feedback.imap_url` for the test user's `folder`.
    pub fn url(&self, folder: &str) -> String {
        format!("imap://{}@127.0.0.1:{}/{folder}", USER.replace('@', "%40"), self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// Delivers `messages` into `folder` (created if need be), as a mail server would.
    pub fn deliver(&self, folder: &str, messages: &[String]) {
        self.session(|mut session| async move {
            if session.select(folder).await.is_err() {
                session.create(folder).await.unwrap();
            }
            for message in messages {
                session.append(folder, None, None, message.as_bytes()).await.unwrap();
            }
            session.logout().await.unwrap();
        });
    }

    /// The flags of each message of `folder`, in order (`\Recent` left out).
    pub fn flags(&self, folder: &str) -> Vec<Vec<String>> {
        self.session(|mut session| async move {
            let exists = session.select(folder).await.unwrap().exists;
            if exists == 0 {
                return Vec::new();
            }
            let fetched: Vec<_> = session.fetch("1:*", "FLAGS").await.unwrap().try_collect().await.unwrap();
            let flags = fetched
                .iter()
                .map(|f| {
                    let mut flags: Vec<String> =
                        f.flags().map(|flag| format!("{flag:?}")).filter(|f| f != "Recent").collect();
                    flags.sort();
                    flags
                })
                .collect();
            session.logout().await.unwrap();
            flags
        })
    }

    fn session<F, Fut, T>(&self, work: F) -> T
    where
        F: FnOnce(async_imap::Session<tokio::net::TcpStream>) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
            let mut client = async_imap::Client::new(tcp);
            client.read_response().await.unwrap().expect("a greeting");
            let session = client.login(USER, PASSWORD).await.map_err(|(e, _)| e).unwrap();
            work(session).await
        })
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM, so that the master stops its login and mail processes too.
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// The mail processes' user: Dovecot refuses root, so as root it is the
/// `dovecot` user the package creates; otherwise whoever runs the tests.
fn mail_user() -> (String, String, u32) {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if uid != 0 {
        let name = std::env::var("USER").unwrap_or_else(|_| uid.to_string());
        return (name.clone(), name, uid);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd.lines().find(|l| l.starts_with("dovecot:")).expect("the dovecot user (dovecot-core makes it)");
    let uid = line.split(':').nth(2).unwrap().parse().unwrap();
    ("dovecot".into(), "dovenull".into(), uid)
}

fn prepare_permissions(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let (_, _, uid) = mail_user();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.join("passwd"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let mail = dir.join("mail");
    std::fs::create_dir(&mail).unwrap();
    std::os::unix::fs::chown(&mail, Some(uid), None).unwrap();
}

fn configuration(dir: &Path, port: u16) -> String {
    let (internal, login, uid) = mail_user();
    let dir = dir.display();
    format!(
        "base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{dir}/mail/%u
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={uid_gid} home={dir}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
",
        uid_gid = gid_of(uid),
    )
}

/// The primary group of `uid`, from /etc/passwd (the user's own id when it is not there).
fn gid_of(uid: u32) -> u32 {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[2].parse() == Ok(uid))
        .and_then(|f| f[3].parse().ok())
        .unwrap_or(uid)
}
