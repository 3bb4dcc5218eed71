//! Message templates: one minijinja file per template, with up to three
//! blocks, rendered at delivery with the send's props.
//!
//! ```jinja
//! {% block subject %}Welcome, {{ name }}!{% endblock %}
//! {% block text %}Hi {{ name }}. Unsubscribe: {{ cairn.unsubscribe_url }}{% endblock %}
//! {% block html %}<p>Hi {{ name }}.</p>{% endblock %}
//! ```
//!
//! `subject` is required for email; at least one of `text` and `html` is
//! required. The `html` block is HTML-escaped, the others are not. A prop
//! the template uses but the send did not give is an error, not an empty
//! string. Besides the props, `cairn.user_id`, `cairn.recipient` and
//! `cairn.unsubscribe_url` are defined.

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use serde::Serialize;

/// The parts a template defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Parts {
    pub subject: bool,
    pub text: bool,
    pub html: bool,
}

/// A rendered message.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Rendered {
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
}

/// Template names: 1-128 characters of letters, digits, `-`, `_`, `.` and `/`.
///
/// # Errors
/// The name, and what is wrong with it.
pub fn check_template_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "template name {name:?} is invalid: use 1-128 letters, digits, '-', '_', '.' or '/'"
        ))
    }
}

fn environment(escape: AutoEscape, undefined: UndefinedBehavior) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(move |_| escape);
    env.set_undefined_behavior(undefined);
    env
}

/// Checks that a template compiles and defines the blocks it needs.
///
/// # Errors
/// The syntax error (with its line), or the missing blocks.
pub fn check_template(name: &str, source: &str) -> Result<Parts, String> {
    check_template_name(name)?;
    let env = environment(AutoEscape::None, UndefinedBehavior::Chainable);
    let template = env
        .template_from_named_str(name, source)
        .map_err(|e| format!("template {name:?} does not compile: {e:#}"))?;
    let mut captured = template
        .render_captured(serde_json::json!({}))
        .map_err(|e| format!("template {name:?} does not evaluate: {e:#}"))?;
    let parts = captured.with_state_mut(|state| {
        let mut has = |block: &str| {
            !matches!(state.render_block(block), Err(e) if e.kind() == ErrorKind::UnknownBlock)
        };
        Parts {
            subject: has("subject"),
            text: has("text"),
            html: has("html"),
        }
    });
    if !parts.text && !parts.html {
        return Err(format!(
            "template {name:?} has neither a text nor an html block: define {{% block text %}}...{{% endblock %}}"
        ));
    }
    Ok(parts)
}

/// Renders a template's blocks with `context` (the props plus `cairn`).
///
/// # Errors
/// What the template could not render: a missing prop, a bad filter call.
pub fn render(name: &str, source: &str, context: &serde_json::Value) -> Result<Rendered, String> {
    let plain = environment(AutoEscape::None, UndefinedBehavior::Strict);
    let html = environment(AutoEscape::Html, UndefinedBehavior::Strict);
    let failed = |e: minijinja::Error| format!("template {name:?} failed to render: {e:#}");
    let mut rendered = Rendered::default();
    let template = plain
        .template_from_named_str(name, source)
        .map_err(failed)?;
    let mut captured = template.render_captured(context).map_err(failed)?;
    captured.with_state_mut(|state| -> Result<(), String> {
        rendered.subject = block(state, "subject").map_err(failed)?;
        rendered.text = block(state, "text").map_err(failed)?;
        Ok(())
    })?;
    let template = html.template_from_named_str(name, source).map_err(failed)?;
    let mut captured = template.render_captured(context).map_err(failed)?;
    rendered.html = captured
        .with_state_mut(|state| block(state, "html"))
        .map_err(failed)?;
    if let Some(subject) = &mut rendered.subject {
        *subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    Ok(rendered)
}

fn block(
    state: &mut minijinja::State<'_, '_>,
    name: &str,
) -> Result<Option<String>, minijinja::Error> {
    match state.render_block(name) {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(e) if e.kind() == ErrorKind::UnknownBlock => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const WELCOME: &str = "{% block subject %}Welcome,\n {{ name }}!{% endblock %}\
        {% block text %}Hi {{ name }}. {{ cairn.unsubscribe_url }}{% endblock %}\
        {% block html %}<p>Hi {{ name }}</p>{% endblock %}";

    #[test]
    fn renders_each_block_and_escapes_only_html() {
        let parts = check_template("welcome", WELCOME).unwrap();
        assert_eq!(
            parts,
            Parts {
                subject: true,
                text: true,
                html: true
            }
        );
        let out = render(
            "welcome",
            WELCOME,
            &json!({"name": "<Ada>", "cairn": {"unsubscribe_url": "http://u"}}),
        )
        .unwrap();
        assert_eq!(out.subject.as_deref(), Some("Welcome, <Ada>!"));
        assert_eq!(out.text.as_deref(), Some("Hi <Ada>. http://u"));
        assert_eq!(out.html.as_deref(), Some("<p>Hi &lt;Ada&gt;</p>"));
    }

    #[test]
    fn bad_templates_and_missing_props_are_named() {
        assert!(
            check_template("x", "{% block text %}{{ oops }")
                .unwrap_err()
                .contains("does not compile")
        );
        assert!(
            check_template("x", "{% block subject %}hi{% endblock %}")
                .unwrap_err()
                .contains("neither")
        );
        assert!(
            check_template("../x y", "{% block text %}{% endblock %}")
                .unwrap_err()
                .contains("invalid")
        );
        let err = render("welcome", WELCOME, &json!({"cairn": {}})).unwrap_err();
        assert!(err.contains("undefined"), "{err}");
    }
}
