//! Talking to systemd (`Type=notify`): `READY=1` once started, `STATUS=`
//! lines, `STOPPING=1`, and `WATCHDOG=1` pings at half the `WatchdogSec`
//! interval. Outside systemd (no `NOTIFY_SOCKET`) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

pub fn ready() {
    send(&[NotifyState::Ready]);
}

pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// How often to ping the watchdog, when systemd asks for it.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|interval| interval / 2)
}

pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::debug!(%error, "cannot notify systemd");
    }
}
