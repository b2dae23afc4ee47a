//! Graphviz (dot) rendering of a dialplan for `ivr12333 dialplan graph`:
//! one node per state, edges labelled with menu keys or outcomes.

use std::fmt::Write;

use super::dialplan::{Dialplan, REPEAT_TARGET, Target, successors};

/// Quotes a string for dot (state names are operator text).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The dialplan as a dot digraph.
pub fn to_dot(plan: &Dialplan) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "digraph {} {{", quote(&plan.name));
    s.push_str("  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n");
    let mut uses_repeat = false;
    for (i, st) in plan.states.iter().enumerate() {
        let shape = match st.kind.type_name() {
            "menu" | "collect" | "callback" => "box, style=rounded",
            "branch" => "diamond",
            "hangup" | "transfer" => "doubleoctagon",
            _ => "box",
        };
        let extra = if i == plan.initial {
            ", penwidth=2"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "  {} [label={}, shape={shape}{extra}];",
            quote(&st.name),
            quote(&format!("{}\n({})", st.name, st.kind.type_name()))
        );
    }
    for st in &plan.states {
        for (label, t) in successors(&st.kind) {
            let to = match t {
                Target::State(j) => match plan.state(j) {
                    Some(x) => x.name.to_string(),
                    None => continue,
                },
                Target::Repeat => {
                    uses_repeat = true;
                    REPEAT_TARGET.to_owned()
                }
            };
            let _ = writeln!(
                s,
                "  {} -> {} [label={}];",
                quote(&st.name),
                quote(&to),
                quote(&label)
            );
        }
    }
    if uses_repeat {
        let _ = writeln!(
            s,
            "  {} [shape=ellipse, style=dashed, label=\"repeat last result\"];",
            quote(REPEAT_TARGET)
        );
    }
    s.push_str("}\n");
    s
}
