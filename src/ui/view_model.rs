//! What the views show, derived from the [`Model`]: which buttons are enabled in which call state,
//! how each user row reads, the status line, the window title. Pure, so it is tested without a window.

use super::model::{Link, Model};
use crate::call::CallState;
use std::time::{Duration, Instant};

/// Which controls are live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Controls {
    /// Hang Up: there is a call to end (dialling, connecting or talking), as on MDN's page.
    pub hang_up: bool,
    /// The Accept / Decline prompt is up.
    pub answer_prompt: bool,
    /// Names in the user list can be clicked to call.
    pub can_dial: bool,
    /// Sending chat: we are registered in the room.
    pub chat: bool,
}

/// How one user shows in the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRow {
    /// The text of the row.
    pub label: String,
    /// The name, for the command a click sends.
    pub name: String,
    /// That's us: marked and never callable.
    pub is_me: bool,
    /// A click calls this user.
    pub callable: bool,
    /// We are in (or setting up) a call with this user.
    pub in_call: bool,
    /// Where the call with this user stands ("in call", "calling you"...), for their row.
    pub note: Option<&'static str>,
}

impl UserRow {
    /// What a screen reader says for the row: who, and where the call with them stands.
    pub fn spoken(&self) -> String {
        match self.note {
            Some(note) => format!("{}, {}", self.name, note.trim_end_matches('\u{2026}')),
            None if self.is_me => self.label.clone(),
            None if self.callable => format!("{}, available", self.name),
            None => format!("{}, available after this call", self.name),
        }
    }
}

impl Model {
    /// Which controls are live now.
    pub fn controls(&self) -> Controls {
        let registered = self.me.is_some() && self.link == Link::Connected;
        Controls {
            hang_up: matches!(
                self.call,
                CallState::Calling { .. } | CallState::Connecting { .. } | CallState::InCall { .. }
            ),
            answer_prompt: matches!(self.call, CallState::Ringing { .. }),
            can_dial: registered && self.call.is_idle(),
            chat: registered,
        }
    }

    /// The user list as rows.
    pub fn user_rows(&self) -> Vec<UserRow> {
        let can_dial = self.controls().can_dial;
        let peer = self.call.peer();
        self.users
            .iter()
            .map(|name| {
                let is_me = self.me.as_deref() == Some(name.as_str());
                UserRow {
                    label: if is_me { format!("{name} (you)") } else { name.clone() },
                    name: name.clone(),
                    is_me,
                    callable: can_dial && !is_me,
                    in_call: peer == Some(name.as_str()),
                    note: (peer == Some(name.as_str())).then_some(match self.call {
                        CallState::Calling { .. } => "calling\u{2026}",
                        CallState::Ringing { .. } => "calling you",
                        CallState::Connecting { .. } => "connecting\u{2026}",
                        _ => "in call",
                    }),
                }
            })
            .collect()
    }

    /// The status line: the link, then the call, then ICE.
    pub fn status_line(&self, now: Instant) -> String {
        let mut parts = Vec::new();
        parts.push(match (&self.link, &self.me) {
            (Link::Connecting, _) => format!("connecting to {}\u{2026}", self.server),
            (Link::Connected, None) => format!("connected to {}, joining\u{2026}", self.server),
            (Link::Connected, Some(me)) => format!("connected to {} as {me}", self.server),
            // The engine's reason is a whole sentence that names the server.
            (Link::Reconnecting { reason, retry_in }, _) => {
                format!("{reason}: retrying in {} s", retry_in.as_secs().max(1))
            }
        });
        match &self.call {
            CallState::Idle => {}
            CallState::InCall { peer } => {
                let since = self.in_call_since.map(|t| now.saturating_duration_since(t)).unwrap_or_default();
                parts.push(format!("in call with {peer} {}", clock(since)));
            }
            other => parts.push(other.to_string()),
        }
        if let Some(ice) = &self.ice {
            parts.push(format!("ICE {ice}"));
        }
        parts.join(" \u{b7} ")
    }

    /// The window title: who we are, in which room, and the call; the window test also reads it.
    pub fn title(&self) -> String {
        let room = room_of(&self.server);
        let Some(me) = self.me.as_deref() else {
            return format!("Peercall \u{2014} joining {room} as {}\u{2026}", self.asked_name);
        };
        match &self.call {
            CallState::Idle => format!("Peercall \u{2014} {me} in {room}"),
            state => format!("Peercall \u{2014} {me} in {room} \u{2014} {state}"),
        }
    }

    /// What the video pane says when there is no picture to show.
    pub fn pane_caption(&self) -> String {
        match &self.call {
            CallState::Idle if self.users.len() <= 1 => "Nobody else is here yet".to_owned(),
            CallState::Idle => "Click a name on the left to call".to_owned(),
            CallState::Calling { peer } => format!("Calling {peer}\u{2026}"),
            // The prompt over the pane says who calls.
            CallState::Ringing { .. } => String::new(),
            CallState::Connecting { peer } => format!("Connecting to {peer}\u{2026}"),
            CallState::InCall { peer } => format!("Waiting for {peer}'s picture\u{2026}"),
        }
    }
}

/// The room a server URL names, as people call it: its path (`ws://h:6503/team-a` is "team-a"), and
/// "lobby" for `/`, as the server treats it.
pub fn room_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = rest.find('/').map_or("", |at| &rest[at..]);
    let path = path.split(['?', '#']).next().unwrap_or("");
    match path.trim_matches('/') {
        "" => "lobby".to_owned(),
        room => room.to_owned(),
    }
}

/// A call duration as m:ss, or h:mm:ss past the hour.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::Event;

    fn model_in(state: CallState) -> Model {
        let mut m = Model::new("ada", "ws://h:6503/");
        let now = Instant::now();
        m.apply(Event::Registered { name: "ada".into() }, now);
        m.apply(Event::UserList(vec!["ada".into(), "bob".into(), "cy".into()]), now);
        m.apply(Event::CallState(state), now);
        m
    }

    fn peer(state: fn(String) -> CallState) -> CallState {
        state("bob".into())
    }

    #[test]
    fn controls_in_each_call_state() {
        let idle = model_in(CallState::Idle).controls();
        assert_eq!(idle, Controls { hang_up: false, answer_prompt: false, can_dial: true, chat: true });

        for state in [
            peer(|peer| CallState::Calling { peer }),
            peer(|peer| CallState::Connecting { peer }),
            peer(|peer| CallState::InCall { peer }),
        ] {
            let c = model_in(state.clone()).controls();
            assert!(c.hang_up, "{state}: hang up enabled");
            assert!(!c.can_dial && !c.answer_prompt, "{state}");
        }

        let ringing = model_in(peer(|peer| CallState::Ringing { peer })).controls();
        assert!(ringing.answer_prompt && !ringing.hang_up && !ringing.can_dial);
    }

    #[test]
    fn nothing_is_callable_before_registration_or_while_reconnecting() {
        let mut m = Model::new("ada", "ws://h/");
        m.apply(Event::UserList(vec!["ada".into(), "bob".into()]), Instant::now());
        assert!(!m.controls().can_dial && !m.controls().chat);
        let mut m = model_in(CallState::Idle);
        m.apply(
            Event::SignalingLost { reason: "eof".into(), retry_in: Duration::from_secs(1) },
            Instant::now(),
        );
        assert!(m.user_rows().iter().all(|r| !r.callable));
    }

    #[test]
    fn own_name_is_marked_and_not_callable() {
        let rows = model_in(CallState::Idle).user_rows();
        assert_eq!(rows[0].label, "ada (you)");
        assert!(rows[0].is_me && !rows[0].callable);
        assert!(rows[1].callable && !rows[1].is_me);
    }

    #[test]
    fn the_peer_row_is_marked_during_a_call() {
        let rows = model_in(peer(|peer| CallState::InCall { peer })).user_rows();
        let bob = rows.iter().find(|r| r.name == "bob").expect("bob listed");
        assert!(bob.in_call && !bob.callable);
        assert_eq!(bob.note, Some("in call"));
        assert!(rows.iter().filter(|r| r.in_call).count() == 1);
        assert_eq!(bob.spoken(), "bob, in call");
        let cy = rows.iter().find(|r| r.name == "cy").expect("cy listed");
        assert_eq!(cy.spoken(), "cy, available after this call");
        assert_eq!(rows[0].spoken(), "ada (you)");
        let idle = model_in(CallState::Idle).user_rows();
        assert_eq!(idle[1].spoken(), "bob, available");
        let calling = model_in(peer(|peer| CallState::Calling { peer })).user_rows();
        assert_eq!(calling[1].spoken(), "bob, calling");
    }

    #[test]
    fn status_line_says_link_call_duration_and_ice() {
        let mut m = model_in(CallState::Idle);
        let t0 = Instant::now();
        assert_eq!(m.status_line(t0), "connected to ws://h:6503/ as ada");
        m.apply(Event::CallState(CallState::InCall { peer: "bob".into() }), t0);
        m.apply(Event::Ice("connected".into()), t0);
        assert_eq!(
            m.status_line(t0 + Duration::from_secs(75)),
            "connected to ws://h:6503/ as ada \u{b7} in call with bob 1:15 \u{b7} ICE connected"
        );
        let reason = "cannot reach the signaling server at ws://h:6503/: connection refused";
        m.apply(Event::SignalingLost { reason: reason.into(), retry_in: Duration::from_secs(2) }, t0);
        assert!(m.status_line(t0).starts_with(&format!("{reason}: retrying in 2 s")));
    }

    #[test]
    fn title_names_us_the_room_and_the_call() {
        assert_eq!(Model::new("ada", "ws://h/").title(), "Peercall \u{2014} joining lobby as ada\u{2026}");
        assert_eq!(model_in(CallState::Idle).title(), "Peercall \u{2014} ada in lobby");
        assert_eq!(
            model_in(peer(|peer| CallState::InCall { peer })).title(),
            "Peercall \u{2014} ada in lobby \u{2014} in call with bob"
        );
    }

    #[test]
    fn rooms_from_server_urls() {
        assert_eq!(room_of("ws://h:6503/"), "lobby");
        assert_eq!(room_of("ws://h:6503"), "lobby");
        assert_eq!(room_of("wss://h/team-a/"), "team-a");
        assert_eq!(room_of("ws://h:6503/team-a?x=1"), "team-a");
        assert_eq!(room_of("h:6503/ops"), "ops");
    }

    #[test]
    fn clock_formats_minutes_and_hours() {
        assert_eq!(clock(Duration::from_secs(5)), "0:05");
        assert_eq!(clock(Duration::from_secs(3725)), "1:02:05");
    }
}
