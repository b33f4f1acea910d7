//! MQTT topic filters and templates, without I/O.

/// A filter as MQTT 3.1.1 §4.7 has it: `+` a whole level, `#` the last level.
pub fn check_filter(f: &str) -> Result<(), String> {
    if f.is_empty() || f.len() > 1024 {
        return Err(format!(
            "expected a topic filter of 1 to 1024 bytes, got {f:?}"
        ));
    }
    let levels: Vec<&str> = f.split('/').collect();
    for (i, l) in levels.iter().enumerate() {
        let ok = match *l {
            "+" => true,
            "#" => i == levels.len() - 1,
            l => !l.contains(['+', '#']),
        };
        if !ok {
            return Err(format!(
                "expected + and # as whole levels (# only last), got {f:?}"
            ));
        }
    }
    Ok(())
}

/// How many wildcard levels the filter has.
pub fn wildcards(f: &str) -> usize {
    f.split('/').filter(|l| *l == "+" || *l == "#").count()
}

/// Whether `topic` matches `filter`; the levels its wildcards matched (a `#`
/// match is the rest of the topic, `/` included).
pub fn matches<'t>(filter: &str, topic: &'t str) -> Option<Vec<&'t str>> {
    let mut caps = Vec::new();
    let mut rest = topic;
    let mut levels = filter.split('/').peekable();
    while let Some(l) = levels.next() {
        if l == "#" {
            // `a/#` matches `a` too (§4.7.1.2); never `$SYS` topics from a leading wildcard.
            caps.push(rest);
            return (!topic.starts_with('$') || !filter.starts_with('#')).then_some(caps);
        }
        let (level, tail) = match rest.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (rest, None),
        };
        if l == "+" {
            if topic.starts_with('$') && caps.is_empty() && filter.starts_with('+') {
                return None;
            }
            caps.push(level);
        } else if l != level {
            return None;
        }
        match (tail, levels.peek()) {
            (Some(t), Some(_)) => rest = t,
            (None, None) => return Some(caps),
            (None, Some(&"#")) => {
                caps.push("");
                return Some(caps);
            }
            _ => return None,
        }
    }
    None
}

/// `{name}`, `{value}`, `{path}`, `{args}` replaced; other braces kept as they are.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_as_mqtt_says() {
        assert_eq!(matches("a/+/c", "a/b/c"), Some(vec!["b"]));
        assert_eq!(matches("a/+/c", "a/b/d"), None);
        assert_eq!(matches("a/+", "a/b/c"), None);
        assert_eq!(matches("a/#", "a/b/c"), Some(vec!["b/c"]));
        assert_eq!(matches("a/#", "a"), Some(vec![""]));
        assert_eq!(matches("#", "x/y"), Some(vec!["x/y"]));
        assert_eq!(matches("#", "$SYS/x"), None);
        assert_eq!(matches("+/x", "$SYS/x"), None);
        assert_eq!(matches("a/b", "a/b"), Some(vec![]));
        assert_eq!(matches("a/b", "a/b/"), None);
        assert_eq!(matches("a/+/+", "a//z"), Some(vec!["", "z"]));
    }

    #[test]
    fn filters_are_checked() {
        for good in ["a", "a/+/b", "#", "a/#", "+"] {
            assert!(check_filter(good).is_ok(), "{good}");
        }
        for bad in ["", "a/#/b", "a+/b", "a/b#"] {
            assert!(check_filter(bad).is_err(), "{bad}");
        }
        assert_eq!(wildcards("a/+/b/#"), 2);
    }

    #[test]
    fn templates_render() {
        assert_eq!(
            render(
                "{\"on\": {value}, \"dev\": \"{name}\"}",
                &[("value", "true"), ("name", "l1")]
            ),
            "{\"on\": true, \"dev\": \"l1\"}"
        );
    }

    proptest::proptest! {
        #[test]
        fn a_topic_matches_itself_and_the_hash_filter(levels in proptest::collection::vec("[a-z0-9]{0,5}", 1..6)) {
            let t = levels.join("/");
            proptest::prop_assert_eq!(matches(&t, &t), Some(vec![]));
            proptest::prop_assert!(matches("#", &t).is_some());
            let plus = vec!["+"; levels.len()].join("/");
            let caps = matches(&plus, &t).unwrap();
            proptest::prop_assert_eq!(caps.join("/"), t);
        }
    }
}
