//! The policy every send goes through, decided when `send` is called and
//! written on the receipt the journey gets back. [`decide`] is a pure
//! function of the tenant's settings and the [`Facts`] the store knows about
//! the recipient, so each branch is tested without a database.
//!
//! The order, first match wins:
//! 1. the address is on the suppression list → `suppressed` (every category);
//! 2. the user unsubscribed from everything or from this category →
//!    `unsubscribed` (transactional is exempt);
//! 3. the recipient's frequency cap is reached → `frequency-capped`;
//! 4. it is outside the send window in the user's time zone → `deferred-until`
//!    the next opening (the message is queued for then);
//! 5. else `queued`.

use super::config::{DeliveryConfig, TRANSACTIONAL};
use super::localtime::{Window, resolve_zone};
use crate::clock::Millis;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// What the store knows about a recipient when a send is checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// Why the address is suppressed, if it is.
    pub suppressed: Option<String>,
    /// The user unsubscribed from everything.
    pub unsubscribed_all: bool,
    /// Categories the user unsubscribed from.
    pub unsubscribed: Vec<String>,
    /// Messages queued or sent to the user within the cap's window, by category.
    pub recent_sends: Vec<(String, u32)>,
    /// The user's own time zone, as stored (may be invalid).
    pub timezone: Option<String>,
}

/// The fate of a send, as the receipt reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "until", rename_all = "kebab-case")]
pub enum Verdict {
    Queued,
    Suppressed,
    Unsubscribed,
    FrequencyCapped,
    DeferredUntil(Millis),
}

impl Verdict {
    /// The outbox status of a message with this verdict.
    pub fn outbox_status(self) -> &'static str {
        match self {
            Verdict::Queued | Verdict::DeferredUntil(_) => "queued",
            Verdict::Suppressed => "suppressed",
            Verdict::Unsubscribed => "unsubscribed",
            Verdict::FrequencyCapped => "frequency-capped",
        }
    }

    /// Whether the message will be delivered.
    pub fn delivers(self) -> bool {
        matches!(self, Verdict::Queued | Verdict::DeferredUntil(_))
    }
}

/// The user's time zone: their own if valid, else the tenant's, else UTC.
pub fn user_zone(config: &DeliveryConfig, facts: &Facts) -> Tz {
    resolve_zone([
        facts.timezone.as_deref(),
        config.default_timezone.as_deref(),
    ])
}

/// Decides a send of `category` at `now`. `earlier` are the categories of
/// messages the same step already queued for this user (not yet in the store).
pub fn decide(
    config: &DeliveryConfig,
    facts: &Facts,
    category: &str,
    earlier: &[&str],
    now: Millis,
) -> Verdict {
    if facts.suppressed.is_some() {
        return Verdict::Suppressed;
    }
    let transactional = category == TRANSACTIONAL;
    if !transactional
        && (facts.unsubscribed_all || facts.unsubscribed.iter().any(|c| c == category))
    {
        return Verdict::Unsubscribed;
    }
    if let Some(cap) = &config.frequency_cap
        && !cap.exempt.iter().any(|c| c == category)
    {
        let counts =
            |c: &str| !cap.exempt.iter().any(|e| e == c) && (!cap.per_category || c == category);
        let stored: u32 = facts
            .recent_sends
            .iter()
            .filter(|(c, _)| counts(c))
            .map(|(_, n)| n)
            .sum();
        let in_step = earlier.iter().filter(|c| counts(c)).count() as u32;
        if stored + in_step >= cap.count {
            return Verdict::FrequencyCapped;
        }
    }
    if let Some(window) = &config.send_window
        && !window.exempt.iter().any(|c| c == category)
    {
        match Window::parse(window) {
            Ok(window) => {
                if let Some(opens) = window.next_opening(now, user_zone(config, facts)) {
                    return Verdict::DeferredUntil(opens);
                }
            }
            Err(why) => tracing::warn!(target: "cairn.delivery", "send window ignored: {why}"),
        }
    }
    Verdict::Queued
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::config::{FrequencyCap, SendWindow};

    const NOON_UTC: Millis = 1_780_000_000_000 - 1_780_000_000_000 % 86_400_000 + 43_200_000;

    fn config() -> DeliveryConfig {
        DeliveryConfig {
            frequency_cap: Some(FrequencyCap {
                count: 2,
                window_ms: 86_400_000,
                per_category: false,
                exempt: vec![TRANSACTIONAL.into()],
            }),
            send_window: Some(SendWindow {
                start: "09:00".into(),
                end: "20:00".into(),
                days: None,
                exempt: vec![TRANSACTIONAL.into()],
            }),
            ..DeliveryConfig::default()
        }
    }

    #[test]
    fn each_rule_in_order() {
        let config = config();
        let open = Facts::default();
        assert_eq!(
            decide(&config, &open, "marketing", &[], NOON_UTC),
            Verdict::Queued
        );

        let suppressed = Facts {
            suppressed: Some("hard bounce".into()),
            ..Facts::default()
        };
        assert_eq!(
            decide(&config, &suppressed, TRANSACTIONAL, &[], NOON_UTC),
            Verdict::Suppressed
        );

        let unsubscribed = Facts {
            unsubscribed: vec!["marketing".into()],
            ..Facts::default()
        };
        assert_eq!(
            decide(&config, &unsubscribed, "marketing", &[], NOON_UTC),
            Verdict::Unsubscribed
        );
        assert_eq!(
            decide(&config, &unsubscribed, "product", &[], NOON_UTC),
            Verdict::Queued
        );
        let everything = Facts {
            unsubscribed_all: true,
            ..Facts::default()
        };
        assert_eq!(
            decide(&config, &everything, "product", &[], NOON_UTC),
            Verdict::Unsubscribed
        );
        assert_eq!(
            decide(&config, &everything, TRANSACTIONAL, &[], NOON_UTC),
            Verdict::Queued
        );

        let busy = Facts {
            recent_sends: vec![("marketing".into(), 1), (TRANSACTIONAL.into(), 5)],
            ..Facts::default()
        };
        assert_eq!(
            decide(&config, &busy, "product", &[], NOON_UTC),
            Verdict::Queued
        );
        assert_eq!(
            decide(&config, &busy, "product", &["marketing"], NOON_UTC),
            Verdict::FrequencyCapped,
            "a send earlier in the same step counts"
        );
        assert_eq!(
            decide(&config, &busy, TRANSACTIONAL, &["x", "y"], NOON_UTC),
            Verdict::Queued
        );

        // 23:00 in Berlin (summer): deferred to 09:00 local next morning.
        let late = NOON_UTC + 9 * 3_600_000;
        let berliner = Facts {
            timezone: Some("Europe/Berlin".into()),
            ..Facts::default()
        };
        match decide(&config, &berliner, "marketing", &[], late) {
            Verdict::DeferredUntil(t) => assert_eq!(t, NOON_UTC + 86_400_000 - 5 * 3_600_000),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decide(&config, &berliner, TRANSACTIONAL, &[], late),
            Verdict::Queued
        );
    }

    #[test]
    fn a_per_category_cap_counts_only_its_category() {
        let mut config = config();
        config.send_window = None;
        config.frequency_cap.as_mut().unwrap().per_category = true;
        let facts = Facts {
            recent_sends: vec![("marketing".into(), 2), ("product".into(), 1)],
            ..Facts::default()
        };
        assert_eq!(
            decide(&config, &facts, "marketing", &[], 0),
            Verdict::FrequencyCapped
        );
        assert_eq!(decide(&config, &facts, "product", &[], 0), Verdict::Queued);
        assert_eq!(
            decide(&config, &facts, "product", &["product"], 0),
            Verdict::FrequencyCapped
        );
    }

    #[test]
    fn an_invalid_user_zone_falls_back_to_the_tenant_default() {
        let mut config = config();
        config.default_timezone = Some("America/New_York".into());
        let facts = Facts {
            timezone: Some("Atlantis/Lost".into()),
            ..Facts::default()
        };
        assert_eq!(
            user_zone(&config, &facts),
            "America/New_York".parse::<Tz>().unwrap()
        );
    }
}
