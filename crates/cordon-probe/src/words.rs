//! Splits a `--runtime-cmd` string into words the way a POSIX shell would quote them, without
//! any expansion: blanks separate words, `'...'` is literal, `"..."` allows `\"`, `\\`, `\$`
//! and `` \` ``, and a backslash outside quotes escapes the next character.

/// The words of `line`, or why it cannot be split (an unterminated quote or escape).
pub fn split(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("trailing backslash".into()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::split;

    fn ok(s: &str) -> Vec<String> {
        split(s).unwrap()
    }

    #[test]
    fn plain_words() {
        assert_eq!(
            ok("  bwrap --unshare-all\t--ro-bind /usr /usr "),
            ["bwrap", "--unshare-all", "--ro-bind", "/usr", "/usr"]
        );
        assert!(ok("   ").is_empty());
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(
            ok(r#"a 'b c' "d \"e\" \n" f\ g ''"#),
            ["a", "b c", "d \"e\" \\n", "f g", ""]
        );
        assert_eq!(ok("x'y'\"z\""), ["xyz"]);
    }

    #[test]
    fn errors() {
        assert!(split("'open").is_err());
        assert!(split("\"open").is_err());
        assert!(split("end\\").is_err());
    }
}
