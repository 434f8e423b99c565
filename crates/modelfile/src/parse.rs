//! The Modelfile grammar, as Ollama's `parser.ParseFile` reads it: a character-level state machine
//! whose quirks (which characters end a value, how quotes close, which line an error names) are
//! part of the format users rely on, so they are kept rather than tidied.

use std::fmt;

/// A parsed Modelfile: its commands in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Modelfile {
    /// The commands, in the order they appear.
    pub commands: Vec<Command>,
}

/// One command. `name` is lower case: `model` for FROM, the parameter's own name for PARAMETER
/// (`temperature`, `stop`, …), else the keyword (`template`, `message`, …). A MESSAGE's `args` are
/// `role: content`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// What the command sets.
    pub name: String,
    /// Its value, unquoted.
    pub args: String,
}

impl Command {
    /// A command with this name and value.
    pub fn new(name: impl Into<String>, args: impl Into<String>) -> Command {
        Command {
            name: name.into(),
            args: args.into(),
        }
    }
}

/// Why a Modelfile does not parse. The texts are Ollama's, so a script that matches on them keeps
/// working; [`ParseError::line`] gives the line where Ollama's text has none.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// A command word that is not one of the eleven, or a command word followed by something other
    /// than a space.
    #[error(
        "(line {line}): command must be one of \"from\", \"license\", \"template\", \"system\", \"adapter\", \"draft\", \"renderer\", \"parser\", \"parameter\", \"message\", or \"requires\""
    )]
    InvalidCommand {
        /// 1-based line (a CR LF pair counts as two line ends, as in Ollama).
        line: usize,
    },
    /// `MESSAGE` with a role other than `system`, `user` or `assistant`.
    #[error("(line {line}): message role must be one of \"system\", \"user\", or \"assistant\"")]
    InvalidMessageRole {
        /// 1-based line.
        line: usize,
    },
    /// A PARAMETER name or MESSAGE role cut short (by a line end, or a character names cannot hold).
    #[error("unexpected EOF: {word}")]
    Truncated {
        /// 1-based line where it was cut.
        line: usize,
        /// The name or role read so far.
        word: String,
    },
    /// The file ended inside a quoted value or before a command had its value.
    #[error("unexpected EOF")]
    UnexpectedEof {
        /// The last line.
        line: usize,
    },
    /// No FROM command.
    #[error("no FROM line")]
    MissingFrom,
}

impl ParseError {
    /// The line the error is on (`None` for a missing FROM, which is on no line).
    pub fn line(&self) -> Option<usize> {
        match self {
            ParseError::InvalidCommand { line }
            | ParseError::InvalidMessageRole { line }
            | ParseError::Truncated { line, .. }
            | ParseError::UnexpectedEof { line } => Some(*line),
            ParseError::MissingFrom => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between commands.
    Idle,
    /// Reading the command word.
    Keyword,
    /// Reading a value (to the end of the line, or of its quotes).
    Value,
    /// Reading a PARAMETER's name.
    ParameterName,
    /// Reading a MESSAGE's role.
    Role,
    /// Inside a `#` comment.
    Comment,
}

/// What one character does in a state: the next state and the character to keep (`None` drops
/// it), or an error.
enum Step {
    To(State, Option<char>),
    InvalidCommand,
    Truncated,
}

fn step(c: char, state: State) -> Step {
    use State::*;
    match state {
        Idle if c == '#' => Step::To(Comment, None),
        Idle if is_space(c) || is_newline(c) => Step::To(Idle, None),
        Idle => Step::To(Keyword, Some(c)),
        Keyword if c.is_ascii_alphabetic() => Step::To(Keyword, Some(c)),
        Keyword if is_space(c) => Step::To(Value, None),
        Keyword => Step::InvalidCommand,
        // A blank or line end may end the value; whether it does depends on the quotes so far.
        Value if is_newline(c) || is_space(c) => Step::To(Idle, Some(c)),
        Value => Step::To(Value, Some(c)),
        ParameterName if c.is_ascii_alphanumeric() || c == '_' => Step::To(ParameterName, Some(c)),
        ParameterName | Role if is_space(c) => Step::To(Value, None),
        ParameterName => Step::Truncated,
        Role if c.is_ascii_alphabetic() => Step::To(Role, Some(c)),
        Role => Step::Truncated,
        Comment if is_newline(c) => Step::To(Idle, None),
        Comment => Step::To(Comment, None),
    }
}

/// Parses Modelfile bytes: UTF-8 (a leading byte-order mark is dropped), or UTF-16 when the text
/// starts with a UTF-16 byte-order mark, as Ollama reads them. Invalid sequences become U+FFFD.
pub fn parse_bytes(bytes: &[u8]) -> Result<Modelfile, ParseError> {
    parse(&decode(bytes))
}

/// The text of Modelfile bytes, decoded as [`parse_bytes`] decodes them.
pub fn decode(bytes: &[u8]) -> String {
    let utf16 = |rest: &[u8], unit: fn([u8; 2]) -> u16| {
        let units = rest.chunks(2).map(|pair| match pair {
            [a, b] => unit([*a, *b]),
            // An odd trailing byte is an invalid unit.
            _ => 0xDC00,
        });
        char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect()
    };
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => String::from_utf8_lossy(rest).into_owned(),
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Parses Modelfile text.
pub fn parse(text: &str) -> Result<Modelfile, ParseError> {
    let mut state = State::Idle;
    let mut line = 1;
    let mut word = String::new();
    let mut name = String::new();
    let mut role = String::new();
    let mut commands = Vec::new();

    for c in text.chars() {
        if is_newline(c) {
            line += 1;
        }
        let (mut next, keep) = match step(c, state) {
            Step::To(next, keep) => (next, keep),
            Step::InvalidCommand => return Err(ParseError::InvalidCommand { line }),
            Step::Truncated => return Err(ParseError::Truncated { line, word }),
        };
        if next != state {
            match state {
                State::Keyword => {
                    let keyword = word.to_ascii_lowercase();
                    match keyword.as_str() {
                        "from" => name = "model".to_owned(),
                        "parameter" => next = State::ParameterName,
                        "message" => {
                            next = State::Role;
                            name = keyword;
                        }
                        "license" | "template" | "system" | "adapter" | "draft" | "renderer"
                        | "parser" | "requires" => name = keyword,
                        _ => return Err(ParseError::InvalidCommand { line }),
                    }
                }
                State::ParameterName => name = word.clone(),
                State::Role => {
                    if !matches!(word.as_str(), "system" | "user" | "assistant") {
                        return Err(ParseError::InvalidMessageRole { line });
                    }
                    role = std::mem::take(&mut word);
                }
                State::Comment | State::Idle => {}
                State::Value => {
                    // The value ends at a line end once its quotes are closed; blanks never end it
                    // (they are trimmed at the end instead).
                    let closed = unquote(word.trim()).filter(|_| !keep.is_some_and(is_space));
                    let Some(value) = closed else {
                        word.extend(keep);
                        continue;
                    };
                    commands.push(Command::new(&name, with_role(&mut role, value)));
                }
            }
            word.clear();
            state = next;
        }
        if let Some(c) = keep.filter(|c| kiln_go::strconv::is_print(*c)) {
            word.push(c);
        }
    }

    match state {
        State::Comment | State::Idle => {}
        State::Value => {
            let value = unquote(word.trim()).ok_or(ParseError::UnexpectedEof { line })?;
            commands.push(Command::new(&name, with_role(&mut role, value)));
        }
        State::Keyword | State::ParameterName | State::Role => {
            return Err(ParseError::UnexpectedEof { line });
        }
    }
    if !commands.iter().any(|c| c.name == "model") {
        return Err(ParseError::MissingFrom);
    }
    Ok(Modelfile { commands })
}

fn with_role(role: &mut String, value: &str) -> String {
    if role.is_empty() {
        value.to_owned()
    } else {
        format!("{}: {value}", std::mem::take(role))
    }
}

/// The inside of `"…"` or `"""…"""`, or the text itself when unquoted; `None` while the quotes are
/// still open.
fn unquote(s: &str) -> Option<&str> {
    if let Some(rest) = s.strip_prefix(r#"""""#) {
        return if s.len() >= 6 {
            rest.strip_suffix(r#"""""#)
        } else {
            None
        };
    }
    if let Some(rest) = s.strip_prefix('"') {
        return if s.len() >= 2 {
            rest.strip_suffix('"')
        } else {
            None
        };
    }
    Some(s)
}

/// A value as the formatter writes it: bare unless it holds a line end or starts or ends with a
/// space; then in `"""` when it holds a quote, else in `"`.
pub fn quote(s: &str) -> String {
    if s.contains('\n') || s.starts_with(' ') || s.ends_with(' ') {
        if s.contains('"') {
            format!(r#""""{s}""""#)
        } else {
            format!("\"{s}\"")
        }
    } else {
        s.to_owned()
    }
}

fn is_space(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_newline(c: char) -> bool {
    c == '\r' || c == '\n'
}

impl fmt::Display for Command {
    /// One line, as Ollama writes it (no line end).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name.as_str() {
            "model" => write!(f, "FROM {}", self.args),
            "license" | "template" | "system" | "adapter" | "renderer" | "parser" | "requires"
            | "draft" => write!(f, "{} {}", self.name.to_uppercase(), quote(&self.args)),
            "message" => {
                let (role, content) = self.args.split_once(": ").unwrap_or((&self.args, ""));
                write!(f, "MESSAGE {role} {}", quote(content))
            }
            _ => write!(f, "PARAMETER {} {}", self.name, quote(&self.args)),
        }
    }
}

impl fmt::Display for Modelfile {
    /// The Modelfile as Ollama formats it: one line per command, each ended by a line feed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for command in &self.commands {
            writeln!(f, "{command}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Modelfile {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Modelfile, ParseError> {
        parse(s)
    }
}
