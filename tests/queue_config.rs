//! `[[queue]]`/`[[agent]]` TOML tables: the documented example parses and
//! builds, defaults apply, and errors say what is wrong without echoing
//! values.

use std::time::Duration;

use ivr12333::queue::config::{QueueConfigError, QueuesFile};
use ivr12333::queue::{AgentId, MaxWaitAction, QueueMode, Strategy};

fn doc_example() -> String {
    let doc = include_str!("../docs/queue.md");
    let start = doc.find("```toml\n").expect("toml block") + "```toml\n".len();
    let end = start + doc[start..].find("```").expect("end of block");
    doc[start..end].to_owned()
}

#[test]
fn the_documented_example_builds() {
    let f = QueuesFile::from_toml_str(&doc_example()).unwrap();
    let (queues, agents) = f.clone().into_configs().unwrap();
    assert_eq!(agents.len(), 3);
    assert_eq!(
        agents[2].contact.as_deref(),
        Some("sip:2001@10.0.0.21:5060")
    );
    let general = &queues[0];
    assert_eq!(general.strategy, Strategy::LongestIdle);
    assert_eq!(general.ring_timeout, Duration::from_secs(15));
    assert_eq!(general.first_announce_after, Duration::from_secs(5));
    assert_eq!(general.mode, QueueMode::Bridge);
    let policy = &queues[1];
    assert_eq!(policy.strategy, Strategy::RingAll);
    assert_eq!(policy.on_max_wait, MaxWaitAction::ReturnToMenu);
    assert_eq!(policy.max_wait, Duration::from_secs(180));
    // Defaults fill what the table leaves out.
    assert_eq!(policy.wrap_up, Duration::from_secs(10));
    assert_eq!(policy.announce_every, Duration::from_secs(30));
    assert_eq!(
        policy.mode,
        QueueMode::Refer {
            target: "sip:policy-desk@10.0.0.30:5060".into()
        }
    );
    let mut q = f.build().unwrap();
    let t0 = std::time::Instant::now();
    q.login_static_agents(t0);
    assert_eq!(
        q.agent_state(&AgentId::new("agent2001")),
        Some(ivr12333::queue::AgentState::Available)
    );
}

#[test]
fn asterisk_and_freeswitch_strategy_names() {
    for (name, want) in [
        ("leastrecent", Strategy::LongestIdle),
        ("longest-idle-agent", Strategy::LongestIdle),
        ("rrmemory", Strategy::RoundRobin),
        ("round-robin", Strategy::RoundRobin),
        ("ringall", Strategy::RingAll),
        ("ring_all", Strategy::RingAll),
    ] {
        let text = format!(
            "[[agent]]\nid = \"a\"\n[[queue]]\nname = \"q\"\nagents = [\"a\"]\nstrategy = \"{name}\"\n"
        );
        let (qs, _) = QueuesFile::from_toml_str(&text)
            .unwrap()
            .into_configs()
            .unwrap();
        assert_eq!(qs[0].strategy, want, "{name}");
    }
}

fn build_err(text: &str) -> String {
    match QueuesFile::from_toml_str(text).and_then(|f| f.build().map(|_| ())) {
        Ok(()) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn errors_say_what_is_wrong() {
    let cases = [
        (
            "[[agent]]\nid = \"a\"\n[[queue]]\nname = \"q\"\nagents = [\"b\"]\n",
            "queue \"q\" lists agent \"b\", which is not defined as an [[agent]]",
        ),
        (
            "[[agent]]\nid = \"a\"\n[[queue]]\nname = \"q\"\nagents = [\"a\"]\nmax_wait_secs = 0\n",
            "queue \"q\": max_wait must be greater than zero",
        ),
        (
            "[[agent]]\nid = \"a\"\n[[agent]]\nid = \"a\"\n",
            "agent \"a\" is defined twice",
        ),
        (
            "[[agent]]\nid = \"a\"\n[[queue]]\nname = \"q\"\nagents = [\"a\"]\n[[queue]]\nname = \"q\"\nagents = [\"a\"]\n",
            "queue \"q\" is defined twice",
        ),
        (
            "[[agent]]\nid = \"a\"\n[[queue]]\nname = \"q\"\nagents = [\"a\"]\nmode = \"refer\"\n",
            "queue \"q\": mode = \"refer\" needs refer_target = \"sip:...\"",
        ),
        (
            "[[agent]]\nid = \"a\"\ncontact = \"http://x\"\n",
            "agent \"a\": contact must be a sip: or sips: URI",
        ),
        (
            "[[agent]]\nid = \"a\"\n[[queue]]\nname = \"q\"\nagents = []\n",
            "queue \"q\": agents = [...] must list at least one agent",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(build_err(text), want);
    }
}

#[test]
fn syntax_errors_give_the_line_but_not_the_value() {
    let text = "[[agent]]\nid = \"a\"\npassword = \"hunter2-secret\nbogus\n";
    let e = QueuesFile::from_toml_str(text).unwrap_err();
    let msg = e.to_string();
    assert!(!msg.contains("hunter2"), "{msg}");
    assert!(
        matches!(e, QueueConfigError::Syntax { line: 3..=4, .. }),
        "{msg}"
    );

    let text = "[[agent]]\nid = \"a\"\npasword = \"hunter2-secret\"\n";
    let msg = QueuesFile::from_toml_str(text).unwrap_err().to_string();
    assert!(!msg.contains("hunter2"), "{msg}");
    assert!(msg.contains("line 3"), "{msg}");
    assert!(msg.contains("pasword"), "{msg}");

    let text = "[[queue]]\nname = \"q\"\nagents = [\"a\"]\nring_timeout_secs = \"fast\"\n";
    let msg = QueuesFile::from_toml_str(text).unwrap_err().to_string();
    assert!(msg.contains("line 4"), "{msg}");
}

#[test]
fn agent_table_debug_hides_the_password() {
    let f = QueuesFile::from_toml_str("[[agent]]\nid = \"a\"\npassword = \"hunter2-secret\"\n")
        .unwrap();
    let d = format!("{f:?}");
    assert!(!d.contains("hunter2"), "{d}");
}
