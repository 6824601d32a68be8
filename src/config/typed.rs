//! Settings written as text (a duration, a schedule, a choice, a URL) and
//! parsed once, when the settings load.
//!
//! Reading a [`Typed`] never fails: a text that does not parse is kept with
//! its problem, and the settings' validation reports it with its key and
//! where it came from, together with every other problem. Settings that
//! load hold parsed values only.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a setting's text parses into.
pub trait FromSetting: Sized {
    fn from_setting(text: &str) -> Result<Self, String>;
}

/// A setting's text and what it parsed into.
#[derive(Clone)]
pub struct Typed<T> {
    text: String,
    parsed: Result<T, String>,
}

impl<T: FromSetting> Typed<T> {
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        let parsed = T::from_setting(&text);
        Typed { text, parsed }
    }
}

impl<T> Typed<T> {
    /// The value, for settings that loaded (their validation checked it).
    pub fn get(&self) -> &T {
        self.parsed.as_ref().expect("settings with a value that does not parse are refused when they load")
    }

    /// The text as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The value, or why the text does not parse.
    pub fn parsed(&self) -> Result<&T, &str> {
        self.parsed.as_ref().map_err(String::as_str)
    }
}

impl<'de, T: FromSetting> Deserialize<'de> for Typed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Typed::new)
    }
}

impl<T> Serialize for Typed<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<T> fmt::Debug for Typed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl<T> fmt::Display for Typed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromSetting for chrono::Duration {
    fn from_setting(text: &str) -> Result<Self, String> {
        crate::duration::parse(text)
    }
}

/// A length of time that may be left empty (for ever, never).
impl FromSetting for Option<chrono::Duration> {
    fn from_setting(text: &str) -> Result<Self, String> {
        if text.is_empty() { Ok(None) } else { crate::duration::parse(text).map(Some) }
    }
}

/// A cron expression in UTC; empty: never.
impl FromSetting for Option<crate::schedule::Schedule> {
    fn from_setting(text: &str) -> Result<Self, String> {
        if text.is_empty() { Ok(None) } else { crate::schedule::Schedule::parse(text, chrono_tz::UTC).map(Some) }
    }
}
