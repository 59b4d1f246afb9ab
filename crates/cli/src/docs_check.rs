//! Docs that cannot rot: every `spillway …` command line in README.md and docs/**/*.md is
//! parsed by the real command-line parser, and every `toml` block there (and
//! `spillway.example.toml`) by the real config loader.
//!
//! Command lines come from shell code blocks (tagged `sh`, `bash`, `shell`, `zsh`, `console`,
//! or untagged): `\` continuations are joined, a `$ ` prompt is dropped (in `console` blocks
//! only prompted lines are commands, the rest is output), comments and heredoc bodies are
//! skipped, and a line is split into simple commands at `&&`, `||`, `|`, `;` and `&`. A simple
//! command is Spillway's when its first word (after `VAR=value` assignments and `sudo`/`env`)
//! is `spillway` or a path ending in `/spillway`; scripts given to `sh -c` and command
//! substitutions `$(…)` are looked into as well. `ExecStart=` lines of `ini` blocks (systemd
//! units) count too. Output lines (tables, arrows) never start with `spillway`, so they are
//! left alone. Every `toml` block must be a `spillway.toml` (or a part of one).

use std::path::{Path, PathBuf};

use clap::Parser;

use crate::Cli;
use crate::config::FileConfig;

/// The repository root (the binary crate is `crates/cli`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// README.md and every Markdown file under docs/, sorted, as paths relative to the root.
fn doc_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "md") {
                out.push(path);
            }
        }
    }
    let root = repo_root();
    let mut files = vec![root.join("README.md")];
    walk(&root.join("docs"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| p.strip_prefix(&root).map(Path::to_path_buf).unwrap_or(p))
        .collect()
}

/// A fenced code block: its info string's first word and its lines with their line numbers.
#[derive(Debug)]
struct Block {
    lang: String,
    start: usize,
    lines: Vec<(usize, String)>,
}

/// The fenced (```) code blocks of a Markdown text.
fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            match open.take() {
                Some(block) => out.push(block),
                None => {
                    open = Some(Block {
                        lang: info.split_whitespace().next().unwrap_or("").to_string(),
                        start: number,
                        lines: Vec::new(),
                    });
                }
            }
            continue;
        }
        if let Some(block) = open.as_mut() {
            block.lines.push((number, line.to_string()));
        }
    }
    out
}

/// The logical lines of a shell block that may hold commands, each with the number of its
/// first line: continuations joined, prompts dropped, output and heredoc bodies skipped.
fn shell_lines(block: &Block) -> Vec<(usize, String)> {
    let prompted_only = block.lang == "console";
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    let mut heredoc_end: Option<String> = None;
    for (number, raw) in &block.lines {
        if let Some(end) = &heredoc_end {
            if raw.trim() == end {
                heredoc_end = None;
            }
            continue;
        }
        let line = match pending.take() {
            Some((start, mut joined)) => {
                joined.push(' ');
                joined.push_str(raw.trim());
                (start, joined)
            }
            None => {
                let trimmed = raw.trim_start();
                let unprompted = trimmed
                    .strip_prefix("$ ")
                    .or_else(|| (trimmed == "$").then_some(""));
                match unprompted {
                    Some(rest) => (*number, rest.to_string()),
                    None if prompted_only => continue,
                    None => (*number, trimmed.to_string()),
                }
            }
        };
        if let Some(joined) = line.1.strip_suffix('\\') {
            pending = Some((line.0, joined.trim_end().to_string()));
            continue;
        }
        heredoc_end = heredoc_terminator(&line.1);
        out.push(line);
    }
    out.extend(pending);
    out
}

/// The word ending a heredoc that `line` starts (`<<EOF`, `<<-EOF`, `<<'EOF'`), if any.
fn heredoc_terminator(line: &str) -> Option<String> {
    let (_, rest) = line.split_once("<<")?;
    let rest = rest.strip_prefix('-').unwrap_or(rest).trim_start();
    let word: String = rest
        .trim_start_matches(['\'', '"'])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!word.is_empty()).then_some(word)
}

/// A shell token: a word (quotes removed) or a control operator.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Op,
}

/// Split a command line into words and control operators, the way a POSIX shell would for
/// the plain cases docs use (quotes, backslashes, comments, `$(…)` kept whole in its word).
fn tokens(line: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let finish = |word: &mut String, in_word: &mut bool, out: &mut Vec<Token>| {
        if *in_word {
            out.push(Token::Word(std::mem::take(word)));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => finish(&mut word, &mut in_word, &mut out),
            '#' if !in_word => break,
            '&' | '|' | ';' => {
                finish(&mut word, &mut in_word, &mut out);
                if chars.peek() == Some(&c) {
                    chars.next();
                }
                out.push(Token::Op);
            }
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => {
                            if let Some(&next) = chars.peek()
                                && matches!(next, '"' | '\\' | '$' | '`')
                            {
                                chars.next();
                                word.push(next);
                            } else {
                                word.push('\\');
                            }
                        }
                        _ => word.push(q),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            '$' if chars.peek() == Some(&'(') => {
                in_word = true;
                word.push('$');
                let mut depth = 0;
                for q in chars.by_ref() {
                    word.push(q);
                    match q {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {
                in_word = true;
                word.push(c);
            }
        }
    }
    finish(&mut word, &mut in_word, &mut out);
    out
}

/// Words that may come before the command itself.
const PREFIXES: &[&str] = &[
    "sudo", "env", "exec", "time", "nohup", "do", "then", "else", "if", "while", "until", "!", "{",
];

/// The argument vectors of every `spillway` invocation in a command line.
fn invocations(line: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for command in tokens(line).split(|t| *t == Token::Op) {
        let words: Vec<&str> = command
            .iter()
            .filter_map(|t| match t {
                Token::Word(w) => Some(w.as_str()),
                Token::Op => None,
            })
            .collect();
        // Scripts inside the command: `sh -c '…'` (looked into whole) and `$(…)`.
        let mut scripts = Vec::new();
        for (at, pair) in words.windows(3).enumerate() {
            if matches!(pair[0], "sh" | "bash") && pair[1] == "-c" {
                out.extend(invocations(pair[2]));
                scripts.push(at + 2);
            }
        }
        for (at, word) in words.iter().enumerate() {
            if scripts.contains(&at) {
                continue;
            }
            let mut rest = *word;
            while let Some(at) = rest.find("$(") {
                let inner = &rest[at + 2..];
                let end = inner.rfind(')').unwrap_or(inner.len());
                out.extend(invocations(&inner[..end]));
                rest = &inner[end..];
            }
        }
        let words = without_redirections(&words);
        let first = words
            .iter()
            .position(|w| !PREFIXES.contains(w) && !is_assignment(w));
        let Some(first) = first else { continue };
        let program = words[first];
        if program == "spillway" || program.ends_with("/spillway") {
            let mut argv = vec!["spillway".to_string()];
            argv.extend(words[first + 1..].iter().map(|w| (*w).to_string()));
            out.push(argv);
        }
    }
    out
}

/// The words of a simple command without its redirections (`> file`, `2>>file`, `<in`, …),
/// which the shell takes away before the program sees its arguments.
fn without_redirections<'a>(words: &[&'a str]) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut skip_next = false;
    for word in words {
        if skip_next {
            skip_next = false;
            continue;
        }
        let operator = word.trim_start_matches(|c: char| c.is_ascii_digit() || c == '&');
        if operator.starts_with(['>', '<']) {
            // `> file` takes the next word; `>file` and `2>&1` carry their target.
            skip_next = operator.trim_start_matches(['>', '<', '|', '&']).is_empty();
            continue;
        }
        out.push(*word);
    }
    out
}

/// `NAME=value`, a shell variable assignment.
fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// Every `spillway` invocation of a Markdown text, with its line number.
fn doc_invocations(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    for block in blocks(text) {
        match block.lang.as_str() {
            "" | "sh" | "bash" | "shell" | "zsh" | "console" => {
                for (number, line) in shell_lines(&block) {
                    out.extend(invocations(&line).into_iter().map(|argv| (number, argv)));
                }
            }
            "ini" => {
                for (number, line) in &block.lines {
                    let Some(value) = line.trim().strip_prefix("ExecStart=") else {
                        continue;
                    };
                    let value = value.trim_start_matches(['-', '@', '+', '!', ':']);
                    out.extend(invocations(value).into_iter().map(|argv| (*number, argv)));
                }
            }
            _ => {}
        }
    }
    out
}

/// Parse one argument vector as the binary would; `--help` and `--version` are fine.
fn check_argv(argv: &[String]) -> Result<(), String> {
    match Cli::try_parse_from(argv) {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e.render().to_string().trim_end().to_string()),
    }
}

/// `file:line: command: clap's error` for every doc command line that does not parse.
fn command_failures(file: &str, text: &str) -> (usize, Vec<String>) {
    let found = doc_invocations(text);
    let failures = found
        .iter()
        .filter_map(|(line, argv)| {
            check_argv(argv)
                .err()
                .map(|e| format!("{file}:{line}: `{}`:\n{e}", argv.join(" ")))
        })
        .collect();
    (found.len(), failures)
}

/// `file:line: error` for every `toml` block that the config loader refuses.
fn toml_failures(file: &str, text: &str) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut failures = Vec::new();
    for block in blocks(text).into_iter().filter(|b| b.lang == "toml") {
        checked += 1;
        let body: String = block.lines.iter().map(|(_, l)| format!("{l}\n")).collect();
        if let Err(e) = FileConfig::parse(&body) {
            failures.push(format!(
                "{file}:{}: this spillway.toml block does not load: {e:#}",
                block.start
            ));
        }
    }
    (checked, failures)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(repo_root().join(path))
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn every_documented_command_line_parses() {
    let mut total = 0;
    let mut failures = Vec::new();
    for path in doc_files() {
        let (found, failed) = command_failures(&path.display().to_string(), &read(&path));
        total += found;
        failures.extend(failed);
    }
    assert!(
        failures.is_empty(),
        "{} documented command line(s) do not parse:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    // The docs show far more than this; finding fewer means the extraction broke.
    assert!(total >= 20, "only {total} command lines found in the docs");
}

/// Every `spillway …` line of a command's `--help` epilogue (`after_help`), checked like a
/// doc's: each must parse. Returns how many lines were found, and the failures.
fn help_example_failures(command: &clap::Command, path: &str) -> (usize, Vec<String>) {
    let mut found = 0;
    let mut failures = Vec::new();
    if let Some(help) = command.get_after_help() {
        // Read as a shell block, so `\` continuations are joined.
        let block = Block {
            lang: "sh".to_string(),
            start: 1,
            lines: help
                .to_string()
                .lines()
                .enumerate()
                .map(|(i, l)| (i + 1, l.to_string()))
                .collect(),
        };
        for (_, line) in shell_lines(&block) {
            for argv in invocations(&line) {
                found += 1;
                if let Err(e) = check_argv(&argv) {
                    failures.push(format!("{path}: `{}`:\n{e}", argv.join(" ")));
                }
            }
        }
    }
    for sub in command.get_subcommands() {
        let (n, failed) = help_example_failures(sub, &format!("{path} {}", sub.get_name()));
        found += n;
        failures.extend(failed);
    }
    (found, failures)
}

#[test]
fn every_command_help_ends_with_examples_that_parse() {
    use clap::CommandFactory;
    let cli = Cli::command();
    let (found, failures) = help_example_failures(&cli, "spillway");
    assert!(
        failures.is_empty(),
        "{} example(s) in --help do not parse:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    let mut missing = Vec::new();
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        let examples = sub
            .get_after_help()
            .map(|h| h.to_string())
            .unwrap_or_default();
        if !examples.contains("\n  spillway ") {
            missing.push(sub.get_name().to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "these commands' --help ends without an example: {missing:?}"
    );
    assert!(found > 30, "only {found} examples found in --help");
}

#[test]
fn every_documented_config_loads() {
    let mut total = 0;
    let mut failures = Vec::new();
    for path in doc_files() {
        let (checked, failed) = toml_failures(&path.display().to_string(), &read(&path));
        total += checked;
        failures.extend(failed);
    }
    let sample = Path::new("spillway.example.toml");
    if let Err(e) = FileConfig::parse(&read(sample)) {
        failures.push(format!("{}: does not load: {e:#}", sample.display()));
    }
    assert!(
        failures.is_empty(),
        "{} documented config(s) do not load:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(total >= 5, "only {total} toml blocks found in the docs");
}

#[test]
fn a_bogus_flag_or_setting_in_a_doc_is_caught_with_its_line() {
    let doc = "# Title\n\n```sh\nspillway jobs --limit 5\nspillway submit --count 3 \\\n  --no-such-flag -- echo hi\n```\n\n```toml\n[client]\nservr = \"http://x\"\n```\n";
    let (found, failures) = command_failures("doc.md", doc);
    assert_eq!(found, 2);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].starts_with("doc.md:5: `spillway submit --count 3 --no-such-flag"));
    assert!(failures[0].contains("--no-such-flag"), "{}", failures[0]);
    let (checked, failures) = toml_failures("doc.md", doc);
    assert_eq!(checked, 1);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].starts_with("doc.md:9:"), "{}", failures[0]);
    assert!(failures[0].contains("servr"), "{}", failures[0]);
}

#[test]
fn command_lines_are_found_the_way_a_shell_would_see_them() {
    let doc = r#"
```console
$ spillway jobs \
    --limit 3
spillway 0.1.0 output that is not a command
```

```
│ spillway     33m15s   a table row
publishers ──▶ spillway bridge pubsub ──▶ server
spillway pools   # a comment --bogus
```

```sh
export SPILLWAY_SERVER=http://x SPILLWAY_TOKEN=...
SPILLWAY_TOKEN=abc sudo spillway tokens list && echo done
kubectl exec deploy/spillway -- sh -c 'X=$(cat f) /usr/bin/spillway --server http://h:7070 queues list'
ID=$(spillway submit --json -- true | jq -r .id); spillway job "$ID" &
cat > f <<EOF
spillway this is data, not a command
EOF
gcloud compute instance-templates create "spillway-worker" --metadata "spillway-server=x"
spillway completion bash > ~/.bash_completion.d/spillway 2>&1
spillway jobs -o name 2>/dev/null >>ids.txt
```

```ini
ExecStart=/usr/local/bin/spillway worker --queue default
```

```rust
spillway not shell
```
"#;
    let found: Vec<(usize, String)> = doc_invocations(doc)
        .into_iter()
        .map(|(line, argv)| (line, argv.join(" ")))
        .collect();
    let expected: Vec<(usize, String)> = [
        (3, "spillway jobs --limit 3"),
        (11, "spillway pools"),
        (16, "spillway tokens list"),
        (17, "spillway --server http://h:7070 queues list"),
        (18, "spillway submit --json -- true"),
        (18, "spillway job $ID"),
        (23, "spillway completion bash"),
        (24, "spillway jobs -o name"),
        (28, "spillway worker --queue default"),
    ]
    .into_iter()
    .map(|(line, cmd)| (line, cmd.to_string()))
    .collect();
    assert_eq!(found, expected);
}
