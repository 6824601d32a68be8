//! The preference page an unsubscribe link opens: plain HTML forms that work
//! without JavaScript, in English or French by the customer's `locale`
//! attribute. Showing it changes nothing; each form POSTs back to the link.

use crate::config::SubscriptionSettings;

use super::Standing;

/// What the page says, in one language.
pub struct Words {
    pub language: &'static str,
    pub title: &'static str,
    pub about: &'static str,
    pub leave_topic: &'static str,
    pub leave_all: &'static str,
    pub choose: &'static str,
    pub save: &'static str,
    pub blocked: &'static str,
    pub unsubscribed_title: &'static str,
    pub unsubscribed_topic: &'static str,
    pub unsubscribed_all: &'static str,
    pub saved_title: &'static str,
    pub saved: &'static str,
}

const ENGLISH: Words = Words {
    language: "en",
    title: "Your email preferences",
    about: "This message was about:",
    leave_topic: "Unsubscribe from this",
    leave_all: "Unsubscribe from everything",
    choose: "Or choose what you want to receive:",
    save: "Save my choices",
    blocked: "No mail goes to your address at the moment; the choices below apply if that changes.",
    unsubscribed_title: "You are unsubscribed",
    unsubscribed_topic: "You will not receive emails about this any more:",
    unsubscribed_all: "You will not receive these emails any more.",
    saved_title: "Your choices are saved",
    saved: "You will receive emails about:",
};

const FRENCH: Words = Words {
    language: "fr",
    title: "Vos préférences d'e-mail",
    about: "Ce message portait sur :",
    leave_topic: "Me désinscrire de ce sujet",
    leave_all: "Me désinscrire de tout",
    choose: "Ou choisissez ce que vous voulez recevoir :",
    save: "Enregistrer mes choix",
    blocked: "Aucun e-mail n'est envoyé à votre adresse pour le moment ; les choix ci-dessous s'appliqueront si cela change.",
    unsubscribed_title: "Vous êtes désinscrit",
    unsubscribed_topic: "Vous ne recevrez plus d'e-mails sur ce sujet :",
    unsubscribed_all: "Vous ne recevrez plus ces e-mails.",
    saved_title: "Vos choix sont enregistrés",
    saved: "Vous recevrez des e-mails sur :",
};

/// The words for a `locale` attribute such as `fr`, `fr-CA` or `fr_FR`; English otherwise.
pub fn words(locale: Option<&str>) -> &'static Words {
    let language = locale.and_then(|l| l.split(['-', '_']).next()).map(str::to_ascii_lowercase);
    match language.as_deref() {
        Some("fr") => &FRENCH,
        _ => &ENGLISH,
    }
}

/// The preference page for a link of `topic` (`None`: a link made before topics).
pub fn preferences(
    words: &Words,
    settings: &SubscriptionSettings,
    standing: &Standing,
    topic: Option<&str>,
    action: &str,
) -> String {
    let describe = |t: &str| escape(settings.describe(t, words.language));
    let mut body = String::new();
    if standing.suppressed.is_some() || !standing.consent {
        body += &format!("<p>{}</p>", words.blocked);
    }
    if let Some(topic) = topic {
        body += &format!(
            "<p>{} <strong>{}</strong></p>{}",
            words.about,
            describe(topic),
            button(action, "topic", words.leave_topic)
        );
    }
    body += &button(action, "all", words.leave_all);
    body += &format!("<form method=\"post\" action=\"{action}\"><p>{}</p>", words.choose);
    for name in &settings.topics {
        let checked = if standing.consent && !standing.left.contains(name) { " checked" } else { "" };
        body += &format!(
            "<p><label><input type=\"checkbox\" name=\"topic\" value=\"{name}\"{checked}> {}</label></p>",
            describe(name)
        );
    }
    body += &format!("<button type=\"submit\" name=\"action\" value=\"save\">{}</button></form>", words.save);
    document(words.language, words.title, &body)
}

/// The answer to a POST that left one topic (`Some`) or everything.
pub fn unsubscribed(words: &Words, settings: &SubscriptionSettings, topic: Option<&str>) -> String {
    let body = match topic {
        Some(topic) => {
            format!(
                "<p>{} <strong>{}</strong></p>",
                words.unsubscribed_topic,
                escape(settings.describe(topic, words.language))
            )
        }
        None => format!("<p>{}</p>", words.unsubscribed_all),
    };
    document(words.language, words.unsubscribed_title, &body)
}

/// The answer to saved choices: the topics now received.
pub fn saved(words: &Words, settings: &SubscriptionSettings, wanted: &[&str]) -> String {
    let items: String =
        wanted.iter().map(|t| format!("<li>{}</li>", escape(settings.describe(t, words.language)))).collect();
    document(words.language, words.saved_title, &format!("<p>{}</p><ul>{items}</ul>", words.saved))
}

fn button(action: &str, value: &str, label: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{action}\">\
         <button type=\"submit\" name=\"action\" value=\"{value}\">{label}</button></form>"
    )
}

/// A whole page; `title` and `body` are HTML already.
pub fn document(language: &str, title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"{language}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title></head>\
         <body><h1>{title}</h1>{body}</body></html>"
    )
}

/// Escapes text for HTML content and attributes.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn settings() -> SubscriptionSettings {
        let english = BTreeMap::from([("offers".to_owned(), "Offers & <discounts>".to_owned())]);
        let french = BTreeMap::from([("offers".to_owned(), "Offres".to_owned())]);
        SubscriptionSettings {
            topics: vec!["news".into(), "offers".into()],
            record_ip: false,
            descriptions: BTreeMap::from([("en".to_owned(), english), ("fr".to_owned(), french)]),
        }
    }

    #[test]
    fn the_page_ticks_the_topics_received_and_speaks_the_customers_language() {
        let standing = Standing { consent: true, left: BTreeSet::from(["news".to_owned()]), suppressed: None };
        let page = preferences(words(Some("fr-CA")), &settings(), &standing, Some("offers"), "/unsubscribe?token=t");
        assert!(
            page.contains("lang=\"fr\"") && page.contains("Offres") && page.contains("Me désinscrire de tout"),
            "{page}"
        );
        assert!(page.contains("value=\"offers\" checked>") && page.contains("value=\"news\">"), "{page}");
        assert!(!page.contains(&FRENCH.blocked[..20]), "{page}");

        let english = preferences(words(None), &settings(), &standing, None, "/u");
        assert!(english.contains("Offers &amp; &lt;discounts&gt;") && english.contains("value=\"news\">"), "{english}");
        assert!(!english.contains(ENGLISH.leave_topic), "a link without a topic offers no per-topic button: {english}");
        assert_eq!(words(Some("de")).language, "en");
    }
}
