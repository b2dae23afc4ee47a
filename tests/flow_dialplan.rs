//! Dialplan loading: every validation error names its line, and the shipped
//! `dialplans/12333.toml` loads and draws.

use ivr12333::flow::dialplan::{
    BUILTIN_PROMPT_IDS, builtin_prompts, manifest_prompt_ids, parse_dialplan,
};
use ivr12333::flow::graph::to_dot;
use ivr12333::flow::{Dialplan, DialplanError};

fn load(src: &str) -> Result<Dialplan, DialplanError> {
    parse_dialplan("t.toml", src, &builtin_prompts())
}

/// Loads `src`, expects an error on `line`, and returns its message.
fn err_at(src: &str, line: usize) -> String {
    let e = match load(src) {
        Ok(_) => panic!("expected an error on line {line}"),
        Err(e) => e,
    };
    assert_eq!(e.file, "t.toml");
    assert_eq!(e.line, line, "wrong line for: {e}");
    assert!(e.column >= 1);
    e.message
}

const GOOD: &str = r#"[dialplan]
initial = "menu"

[state.menu]
type = "menu"
prompt = ["main_menu"]
keys = { "1" = "collect", "0" = "bye" }
on_fail = "bye"

[state.collect]
type = "collect"
prompt = ["enter_id"]
max_len = 18
next = "bye"
on_fail = "bye"

[state.bye]
type = "hangup"
play = ["goodbye"]
"#;

#[test]
fn a_good_small_plan_loads() {
    let p = load(GOOD).unwrap();
    assert_eq!(p.states.len(), 3);
    assert_eq!(p.state_id("menu"), Some(p.initial));
}

#[test]
fn error_display_is_file_line_col_message() {
    let src = GOOD.replace("\"main_menu\"", "\"nope\"");
    let e = load(&src).unwrap_err();
    assert_eq!(e.to_string(), "t.toml:6:11: unknown prompt id `nope`");
}

#[test]
fn syntax_error_names_its_line() {
    let src = GOOD.replace("max_len = 18", "max_len = = 18");
    let m = err_at(&src, 13);
    assert!(!m.is_empty());
}

#[test]
fn unknown_state_names_the_reference() {
    let src = GOOD.replace("next = \"bye\"", "next = \"byee\"");
    let m = err_at(&src, 14);
    assert!(m.contains("unknown state `byee`"), "{m}");
    // In a menu key too.
    let src = GOOD.replace("\"1\" = \"collect\"", "\"1\" = \"colect\"");
    let m = err_at(&src, 7);
    assert!(m.contains("unknown state `colect`"), "{m}");
}

#[test]
fn unknown_prompt_id() {
    let src = GOOD.replace(
        "play = [\"goodbye\"]",
        "play = [\"goodbye\", \"au_revoir\"]",
    );
    let m = err_at(&src, 19);
    assert!(m.contains("unknown prompt id `au_revoir`"), "{m}");
}

#[test]
fn unreachable_state() {
    let src = format!("{GOOD}\n[state.orphan]\ntype = \"hangup\"\n");
    let m = err_at(&src, 21);
    assert!(m.contains("`orphan` is unreachable"), "{m}");
}

#[test]
fn collect_without_a_way_out() {
    let src = GOOD.replace("next = \"bye\"\non_fail = \"bye\"\n", "next = \"bye\"\n");
    let m = err_at(&src, 10);
    assert!(m.contains("needs `on_fail`"), "{m}");
    let src = GOOD.replace("max_len = 18\nnext = \"bye\"\n", "max_len = 18\n");
    let m = err_at(&src, 10);
    assert!(m.contains("needs `next`"), "{m}");
    // A menu needs one too.
    let src = GOOD.replace("on_fail = \"bye\"\n\n[state.collect]", "\n[state.collect]");
    let m = err_at(&src, 4);
    assert!(m.contains("needs `on_fail`"), "{m}");
}

#[test]
fn bad_timeouts() {
    for bad in ["0", "61000", "-5"] {
        let src = GOOD.replace(
            "max_len = 18",
            &format!("max_len = 18\nfirst_digit_timeout_ms = {bad}"),
        );
        let m = err_at(&src, 14);
        assert!(m.contains("timeout must be between 1 and 60000 ms"), "{m}");
    }
    let src = GOOD.replace(
        "initial = \"menu\"",
        "initial = \"menu\"\ninter_digit_timeout_ms = 0",
    );
    err_at(&src, 3);
    // 60 s exactly is allowed.
    let src = GOOD.replace(
        "max_len = 18",
        "max_len = 18\ninter_digit_timeout_ms = 60000",
    );
    assert!(load(&src).is_ok());
}

#[test]
fn duplicate_keys() {
    // The same menu key twice.
    let src = GOOD.replace("\"0\" = \"bye\"", "\"1\" = \"bye\"");
    let m = err_at(&src, 7);
    assert!(m.to_lowercase().contains("duplicate"), "{m}");
    // The same state twice.
    let src = format!("{GOOD}\n[state.bye]\ntype = \"hangup\"\n");
    let m = err_at(&src, 21);
    assert!(m.to_lowercase().contains("duplicate"), "{m}");
    // The same field twice in a state.
    let src = GOOD.replace("max_len = 18", "max_len = 18\nmax_len = 17");
    err_at(&src, 14);
}

#[test]
fn bad_menu_key() {
    let src = GOOD.replace("\"0\" = \"bye\"", "\"10\" = \"bye\"");
    let m = err_at(&src, 7);
    assert!(m.contains("must be one of 0-9, * or #"), "{m}");
}

#[test]
fn missing_or_unknown_initial_state() {
    let src = GOOD.replace("initial = \"menu\"\n", "");
    let m = err_at(&src, 1);
    assert!(m.contains("missing `initial`"), "{m}");
    let src = GOOD.replace("initial = \"menu\"", "initial = \"start\"");
    let m = err_at(&src, 2);
    assert!(m.contains("unknown state `start`"), "{m}");
    let m = err_at("[state.x]\ntype = \"hangup\"\n", 1);
    assert!(m.contains("dialplan"), "{m}");
}

#[test]
fn unknown_type_field_and_value_kinds() {
    let src = GOOD.replace("type = \"hangup\"", "type = \"hang_up\"");
    let m = err_at(&src, 18);
    assert!(m.contains("unknown state type `hang_up`"), "{m}");
    let src = GOOD.replace("max_len = 18", "max_len = 18\nmaxlen = 3");
    let m = err_at(&src, 14);
    assert!(m.contains("maxlen"), "{m}");
    let src = GOOD.replace(
        "play = [\"goodbye\"]",
        "play = [\"goodbye\", { say = \"amount\", field = \"pension.months\" }]",
    );
    let m = err_at(&src, 19);
    assert!(m.contains("cannot be spoken as `amount`"), "{m}");
    let src = GOOD.replace(
        "play = [\"goodbye\"]",
        "play = [{ say = \"amount\", field = \"pension.secret\" }]",
    );
    let m = err_at(&src, 19);
    assert!(m.contains("unknown field"), "{m}");
}

#[test]
fn repeat_needs_a_repeatable_state() {
    let src = GOOD.replace("\"0\" = \"bye\"", "\"0\" = \"bye\", \"2\" = \"@repeat\"");
    let m = err_at(&src, 1);
    assert!(m.contains("repeatable"), "{m}");
}

#[test]
fn shipped_12333_plan_loads_and_graph_has_every_state() {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dialplans/12333.toml"))
        .unwrap();
    let plan = parse_dialplan("dialplans/12333.toml", &src, &builtin_prompts()).unwrap();
    assert!(plan.states.len() >= 20);
    let dot = to_dot(&plan);
    assert!(dot.starts_with("digraph"));
    for st in &plan.states {
        assert!(
            dot.contains(&format!("\"{}\" [label=", st.name)),
            "{}",
            st.name
        );
    }
    // Edges carry the menu keys.
    assert!(dot.contains("\"main_menu\" -> \"id_entry\" [label=\"1\"]"));
    assert!(dot.contains("\"insurance_menu\" -> \"main_menu\" [label=\"*\"]"));
    assert!(dot.contains("\"after_menu\" -> \"@repeat\" [label=\"2\"]"));
}

#[test]
fn shipped_plan_fails_without_a_recorded_prompt() {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dialplans/12333.toml"))
        .unwrap();
    let known: std::collections::HashSet<&str> = BUILTIN_PROMPT_IDS
        .iter()
        .copied()
        .filter(|p| *p != "off_hours")
        .collect();
    let e = parse_dialplan("12333.toml", &src, &known).unwrap_err();
    assert!(e.message.contains("off_hours"));
    assert!(src.lines().nth(e.line - 1).unwrap().contains("off_hours"));
}

#[test]
fn manifest_ids_are_read() {
    let m = r#"
[[prompt]]
id = "welcome"
text = "您好，欢迎致电12333"
category = "phrase"

[[prompt]]
id = "n_0"
text = "零"
category = "number"
"#;
    assert_eq!(manifest_prompt_ids(m).unwrap(), vec!["welcome", "n_0"]);
    assert!(
        manifest_prompt_ids("[[prompt]\nid=")
            .unwrap_err()
            .starts_with("1:")
    );
}

#[test]
fn hostile_input_never_panics() {
    let inputs = [
        "",
        "\u{0}",
        "[dialplan]\ninitial = 5",
        "[dialplan]\ninitial = \"a\"\n[state.a]\ntype = \"menu\"\nprompt = []\nkeys = {}\non_fail = \"a\"",
        "[dialplan]\ninitial = \"a\"\n[state.a]\ntype = \"collect\"\nprompt = [\"enter_id\"]\nmax_len = 99999999999\nnext = \"a\"\non_fail = \"a\"",
        "[dialplan]\ninitial = \"a\"\n[state.a]\ntype = \"branch\"\nif = \"a\"\nthen = \"a\"\nelse = \"a\"",
        "[dialplan]\ninitial = \"a\"\n[state.a]\nplay = [[[]]]",
    ];
    for i in inputs {
        assert!(load(i).is_err(), "{i:?}");
    }
}

#[test]
fn cycle_of_branches_is_rejected() {
    let src = GOOD.replace("\"0\" = \"bye\"", "\"0\" = \"b1\"")
        + "\n[state.b1]\ntype = \"branch\"\nif = \"agent_hours\"\nthen = \"b2\"\nelse = \"bye\"\n"
        + "\n[state.b2]\ntype = \"branch\"\nif = \"anomaly\"\nthen = \"b1\"\nelse = \"bye\"\n";
    let e = load(&src).unwrap_err();
    assert!(e.message.contains("cycle of branches"), "{e}");
    assert!(e.line == 21 || e.line == 27, "{e}");
}
