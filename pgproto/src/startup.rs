//! What a StartupMessage's parameters mean beyond name and value.

/// `-c name=value` and `--name=value` pairs of the startup packet's
/// `options` (libpq's PGOPTIONS); `\ ` escapes a space in a value.
pub fn command_line_options(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut pairs = Vec::new();
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        let setting = match word.as_str() {
            "-c" => words.next(),
            w => w
                .strip_prefix("--")
                .or_else(|| w.strip_prefix("-c"))
                .map(str::to_string),
        };
        if let Some((name, value)) = setting.as_deref().and_then(|s| s.split_once('=')) {
            pairs.push((name.replace('-', "_"), value.to_string()));
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_options_as_libpq_sends_them() {
        assert_eq!(
            command_line_options(
                "-c statement_timeout=5s --idle-session-timeout=1min -capplication_name=a\\ b"
            ),
            vec![
                ("statement_timeout".to_string(), "5s".to_string()),
                ("idle_session_timeout".to_string(), "1min".to_string()),
                ("application_name".to_string(), "a b".to_string()),
            ]
        );
    }
}
