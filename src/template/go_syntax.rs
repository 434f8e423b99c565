//! A syntax check for Go `text/template` sources with Go's own error messages.
//!
//! Ollama parses every template it stores (`template.Parse`) and answers a parse failure with
//! 400 `template error: <Go's error>`. kiln does not execute templates, so this module only
//! scans and parses them the way Go's `text/template/parse` does: the same tokens, the same
//! lookahead, the same checks (defined functions and variables, `{{break}}` outside `{{range}}`,
//! empty pipelines, duplicate `{{define}}`s, malformed literals) and the same messages with
//! their line numbers, e.g. `template: :1: function "Prompt" not defined`. It follows Go 1.23+
//! (which Ollama is built with): `{{else with}}` is accepted.
//!
//! Deliberate difference: nesting deeper than [`MAX_DEPTH`] (parentheses or control blocks) is
//! an error here, so hostile input cannot exhaust the stack; Go allows 10 000 parentheses.

use std::collections::HashMap;
use std::fmt;

use kiln_go::fmt::format_sharp_u;
use kiln_go::strconv::{parse_float64_finite, parse_int_or_uint_base0, unquote_char};
pub use kiln_go::strconv::{quote as go_quote, unquote as go_unquote};

/// The deepest nesting of parentheses and control blocks accepted: enough for any real template,
/// and small enough that parsing fits in a 2 MiB thread stack (Rust's default for spawned
/// threads and tokio's blocking pool) even in a debug build, where one level of control blocks
/// takes about 5.5 KiB (500 levels overflowed it).
pub const MAX_DEPTH: usize = 200;

/// Go's `text/template` built-in functions.
pub const GO_BUILTINS: &[&str] = &[
    "and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf",
    "println", "urlquery", "eq", "ge", "gt", "le", "lt", "ne",
];

/// A template that Go's parser rejects; `Display` is Go's error text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError(pub String);

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SyntaxError {}

/// What a successful parse found that Ollama checks afterwards.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Some `{{template "name"}}` has no pipeline (Ollama rejects these).
    pub template_without_pipeline: bool,
    /// The main template's nodes (Go's `Tree.Root`).
    pub root: Vec<GoNode>,
    /// Every `{{define}}` and `{{block}}` body, in the order they close, with its name.
    pub definitions: Vec<(String, Vec<GoNode>)>,
}

/// A node of Go's parse tree, with as much of each as Ollama reads (text, the fields and
/// variables named, and the shape of control structures). Comments are not nodes, as in Go
/// without `ParseComments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoNode {
    /// Text between actions, after trim markers took their spaces.
    Text(String),
    /// `{{pipeline}}`.
    Action(Pipeline),
    /// `{{if}}`; an `{{else if}}` is an else list holding one `If`, as in Go.
    If(Branch),
    /// `{{range}}`.
    Range(Branch),
    /// `{{with}}`; `{{else with}}` nests like `{{else if}}`.
    With(Branch),
    /// `{{template "name" pipeline}}` (the pipeline is optional) or a `{{block}}`'s call.
    Template(Option<Pipeline>),
    /// `{{break}}` or `{{continue}}`.
    Loop,
}

/// The pipeline and lists of an `if`, `range` or `with`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch {
    /// The condition or ranged value (declarations are not part of it, as in Go's `Cmds`).
    pub pipe: Pipeline,
    /// The nodes run when the pipeline is non-empty.
    pub list: Vec<GoNode>,
    /// The `{{else}}` nodes, if there is an else.
    pub else_list: Option<Vec<GoNode>>,
}

/// A pipeline's commands, each a list of arguments (Go's `PipeNode.Cmds`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pipeline {
    /// One argument list per `|`-separated command.
    pub commands: Vec<Vec<Arg>>,
}

/// A command argument, as far as Ollama tells them apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// `.A.B`: Go's `FieldNode.Ident` (`["A", "B"]`).
    Field(Vec<String>),
    /// `$x.A`: Go's `VariableNode.Ident` (`["$x", "A"]`; `$.A` is `["$", "A"]`).
    Variable(Vec<String>),
    /// A parenthesised pipeline.
    Pipe(Pipeline),
    /// Anything else: literals, `.`, function names, and chains such as `(x).A`.
    Other,
}

/// Parses `text` as Go's `template.New("").Funcs(funcs).Parse(text)` would, with `funcs`
/// (plus Go's built-ins) as the defined functions.
pub fn parse(text: &str, funcs: &[&str]) -> Result<Parsed, SyntaxError> {
    let mut parser = Parser {
        lex: Lexer::new(text),
        funcs,
        trees: Vec::new(),
        defined: HashMap::new(),
        found: Parsed::default(),
    };
    parser.found.root = parser.parse_top()?;
    Ok(parser.found)
}

// ---------------------------------------------------------------------------------------------
// Tokens

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Error,
    Bool,
    Char,
    CharConstant,
    Complex,
    Assign,
    Declare,
    Eof,
    Field,
    Identifier,
    LeftDelim,
    LeftParen,
    Number,
    Pipe,
    RawString,
    RightDelim,
    RightParen,
    Space,
    String,
    Text,
    Variable,
    // Keywords (printed as `<word>`).
    Block,
    Break,
    Continue,
    Dot,
    Define,
    Else,
    End,
    If,
    Nil,
    Range,
    Template,
    With,
}

impl Kind {
    fn is_keyword(self) -> bool {
        matches!(
            self,
            Kind::Block
                | Kind::Break
                | Kind::Continue
                | Kind::Dot
                | Kind::Define
                | Kind::Else
                | Kind::End
                | Kind::If
                | Kind::Nil
                | Kind::Range
                | Kind::Template
                | Kind::With
        )
    }

    fn keyword(word: &str) -> Option<Kind> {
        Some(match word {
            "." => Kind::Dot,
            "block" => Kind::Block,
            "break" => Kind::Break,
            "continue" => Kind::Continue,
            "define" => Kind::Define,
            "else" => Kind::Else,
            "end" => Kind::End,
            "if" => Kind::If,
            "range" => Kind::Range,
            "nil" => Kind::Nil,
            "template" => Kind::Template,
            "with" => Kind::With,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
struct Item {
    kind: Kind,
    /// The token's text, or the message of an error token.
    val: String,
    line: usize,
}

impl Item {
    fn placeholder() -> Item {
        Item {
            kind: Kind::Error,
            val: String::new(),
            line: 0,
        }
    }
}

impl fmt::Display for Item {
    /// How Go prints a token in "unexpected …" messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Eof => f.write_str("EOF"),
            Kind::Error => f.write_str(&self.val),
            k if k.is_keyword() => write!(f, "<{}>", self.val),
            _ if self.val.len() > 10 => {
                let head: String = self.val.chars().take(10).collect();
                write!(f, "{}...", go_quote(&head))
            }
            _ => f.write_str(&go_quote(&self.val)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer: a pull-based form of Go's state machine.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Text,
    LeftDelim,
    Comment,
    RightDelim,
    InsideAction,
    Space,
    Identifier,
    Field,
    Variable,
    Char,
    Number,
    Quote,
    RawQuote,
    Done,
}

const LEFT_DELIM: &str = "{{";
const RIGHT_DELIM: &str = "}}";
const LEFT_COMMENT: &str = "/*";
const RIGHT_COMMENT: &str = "*/";
const TRIM_MARKER_LEN: usize = 2;

struct Lexer<'a> {
    input: &'a str,
    pos: usize,
    start: usize,
    at_eof: bool,
    paren_depth: i64,
    line: usize,
    start_line: usize,
    state: State,
    ready: std::collections::VecDeque<Item>,
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alphanumeric(c: char) -> bool {
    c == '_' || c.is_alphabetic() || kiln_go::unicode::is_digit(c)
}

fn has_left_trim_marker(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0] == b'-' && is_space(b[1] as char)
}

fn has_right_trim_marker(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && is_space(b[0] as char) && b[1] == b'-'
}

const SPACE_CHARS: &[char] = &[' ', '\t', '\r', '\n'];

impl<'a> Lexer<'a> {
    fn new(input: &'a str) -> Lexer<'a> {
        Lexer {
            input,
            pos: 0,
            start: 0,
            at_eof: false,
            paren_depth: 0,
            line: 1,
            start_line: 1,
            state: State::Text,
            ready: Default::default(),
        }
    }

    fn rest(&self) -> &'a str {
        &self.input[self.pos..]
    }

    fn next(&mut self) -> Option<char> {
        let Some(c) = self.rest().chars().next() else {
            self.at_eof = true;
            return None;
        };
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn peek(&mut self) -> Option<char> {
        let c = self.next();
        self.backup();
        c
    }

    fn backup(&mut self) {
        if !self.at_eof && self.pos > 0 {
            let c = self.input[..self.pos].chars().next_back().expect("pos > 0");
            self.pos -= c.len_utf8();
            if c == '\n' {
                self.line -= 1;
            }
        }
    }

    fn emit(&mut self, kind: Kind) {
        self.ready.push_back(Item {
            kind,
            val: self.input[self.start..self.pos].to_owned(),
            line: self.start_line,
        });
        self.start = self.pos;
        self.start_line = self.line;
    }

    fn ignore(&mut self) {
        self.line += self.input[self.start..self.pos].matches('\n').count();
        self.start = self.pos;
        self.start_line = self.line;
    }

    fn accept(&mut self, valid: &str) -> bool {
        match self.next() {
            Some(c) if valid.contains(c) => true,
            _ => {
                self.backup();
                false
            }
        }
    }

    fn accept_run(&mut self, valid: &str) {
        while matches!(self.next(), Some(c) if valid.contains(c)) {}
        self.backup();
    }

    fn error(&mut self, message: String) -> State {
        self.ready.push_back(Item {
            kind: Kind::Error,
            val: message,
            line: self.start_line,
        });
        State::Done
    }

    fn next_item(&mut self) -> Item {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return item;
            }
            if self.state == State::Done {
                // Go's lexer has stopped; the parser never reads past an error or EOF.
                return Item {
                    kind: Kind::Eof,
                    val: String::new(),
                    line: self.line,
                };
            }
            self.state = self.step(self.state);
        }
    }

    fn step(&mut self, state: State) -> State {
        match state {
            State::Text => self.lex_text(),
            State::LeftDelim => self.lex_left_delim(),
            State::Comment => self.lex_comment(),
            State::RightDelim => self.lex_right_delim(),
            State::InsideAction => self.lex_inside_action(),
            State::Space => self.lex_space(),
            State::Identifier => self.lex_identifier(),
            State::Field => self.lex_field_or_variable(Kind::Field),
            State::Variable => {
                if self.at_terminator() {
                    self.emit(Kind::Variable);
                    State::InsideAction
                } else {
                    self.lex_field_or_variable(Kind::Variable)
                }
            }
            State::Char => self.lex_quoted('\'', Kind::CharConstant, "character constant"),
            State::Number => self.lex_number(),
            State::Quote => self.lex_quoted('"', Kind::String, "quoted string"),
            State::RawQuote => self.lex_raw_quote(),
            State::Done => State::Done,
        }
    }

    fn lex_text(&mut self) -> State {
        if let Some(x) = self.rest().find(LEFT_DELIM) {
            self.pos += x;
            let trim = if has_left_trim_marker(&self.input[self.pos + LEFT_DELIM.len()..]) {
                let text = &self.input[self.start..self.pos];
                text.len() - text.trim_end_matches(SPACE_CHARS).len()
            } else {
                0
            };
            self.pos -= trim;
            if self.pos > self.start {
                self.line += self.input[self.start..self.pos].matches('\n').count();
                self.emit(Kind::Text);
            }
            self.pos += trim;
            self.ignore();
            return State::LeftDelim;
        }
        self.pos = self.input.len();
        if self.pos > self.start {
            self.line += self.input[self.start..self.pos].matches('\n').count();
            self.emit(Kind::Text);
        }
        self.emit(Kind::Eof);
        State::Done
    }

    /// Whether the input is at a right delimiter, and whether it has a trim marker.
    fn at_right_delim(&self) -> (bool, bool) {
        let rest = self.rest();
        if has_right_trim_marker(rest) && rest[TRIM_MARKER_LEN..].starts_with(RIGHT_DELIM) {
            return (true, true);
        }
        (rest.starts_with(RIGHT_DELIM), false)
    }

    fn lex_left_delim(&mut self) -> State {
        self.pos += LEFT_DELIM.len();
        let after_marker = if has_left_trim_marker(self.rest()) {
            TRIM_MARKER_LEN
        } else {
            0
        };
        if self.input[self.pos + after_marker..].starts_with(LEFT_COMMENT) {
            self.pos += after_marker;
            self.ignore();
            return State::Comment;
        }
        self.emit(Kind::LeftDelim);
        self.pos += after_marker;
        self.ignore();
        self.paren_depth = 0;
        State::InsideAction
    }

    fn lex_comment(&mut self) -> State {
        self.pos += LEFT_COMMENT.len();
        let Some(i) = self.rest().find(RIGHT_COMMENT) else {
            return self.error("unclosed comment".into());
        };
        self.pos += i + RIGHT_COMMENT.len();
        let (delim, trim) = self.at_right_delim();
        if !delim {
            return self.error("comment ends before closing delimiter".into());
        }
        if trim {
            self.pos += TRIM_MARKER_LEN;
        }
        self.pos += RIGHT_DELIM.len();
        if trim {
            self.pos += leading_space_len(self.rest());
        }
        self.ignore();
        State::Text
    }

    fn lex_right_delim(&mut self) -> State {
        let trim = has_right_trim_marker(self.rest());
        if trim {
            self.pos += TRIM_MARKER_LEN;
            self.ignore();
        }
        self.pos += RIGHT_DELIM.len();
        self.emit(Kind::RightDelim);
        if trim {
            self.pos += leading_space_len(self.rest());
            self.ignore();
        }
        State::Text
    }

    fn lex_inside_action(&mut self) -> State {
        let (delim, _) = self.at_right_delim();
        if delim {
            if self.paren_depth == 0 {
                return State::RightDelim;
            }
            return self.error("unclosed left paren".into());
        }
        let Some(c) = self.next() else {
            return self.error("unclosed action".into());
        };
        match c {
            c if is_space(c) => {
                self.backup();
                return State::Space;
            }
            '=' => self.emit(Kind::Assign),
            ':' => {
                if self.next() != Some('=') {
                    return self.error("expected :=".into());
                }
                self.emit(Kind::Declare);
            }
            '|' => self.emit(Kind::Pipe),
            '"' => return State::Quote,
            '`' => return State::RawQuote,
            '$' => return State::Variable,
            '\'' => return State::Char,
            '.' if self
                .rest()
                .as_bytes()
                .first()
                .is_some_and(|b| !b.is_ascii_digit()) =>
            {
                return State::Field;
            }
            '.' | '+' | '-' | '0'..='9' => {
                self.backup();
                return State::Number;
            }
            c if is_alphanumeric(c) => {
                self.backup();
                return State::Identifier;
            }
            '(' => {
                self.emit(Kind::LeftParen);
                self.paren_depth += 1;
            }
            ')' => {
                self.emit(Kind::RightParen);
                self.paren_depth -= 1;
                if self.paren_depth < 0 {
                    return self.error(format!("unexpected right paren {}", format_sharp_u(c)));
                }
            }
            c if c.is_ascii() && (c == ' ' || c.is_ascii_graphic()) => self.emit(Kind::Char),
            c => {
                return self.error(format!(
                    "unrecognized character in action: {}",
                    format_sharp_u(c)
                ));
            }
        }
        State::InsideAction
    }

    fn lex_space(&mut self) -> State {
        let mut spaces = 0;
        while matches!(self.peek(), Some(c) if is_space(c)) {
            self.next();
            spaces += 1;
        }
        let before = &self.input[self.pos - 1..];
        if has_right_trim_marker(before) && before[TRIM_MARKER_LEN..].starts_with(RIGHT_DELIM) {
            self.backup();
            if spaces == 1 {
                return State::RightDelim;
            }
        }
        self.emit(Kind::Space);
        State::InsideAction
    }

    fn lex_identifier(&mut self) -> State {
        loop {
            match self.next() {
                Some(c) if is_alphanumeric(c) => {}
                c => {
                    self.backup();
                    let word = &self.input[self.start..self.pos];
                    if !self.at_terminator() {
                        return self.error(format!("bad character {}", go_unicode_opt(c)));
                    }
                    let kind = match Kind::keyword(word) {
                        Some(k) => k,
                        None if word.starts_with('.') => Kind::Field,
                        None if word == "true" || word == "false" => Kind::Bool,
                        None => Kind::Identifier,
                    };
                    self.emit(kind);
                    return State::InsideAction;
                }
            }
        }
    }

    fn lex_field_or_variable(&mut self, kind: Kind) -> State {
        if self.at_terminator() {
            self.emit(if kind == Kind::Variable {
                Kind::Variable
            } else {
                Kind::Dot
            });
            return State::InsideAction;
        }
        let last = loop {
            let c = self.next();
            match c {
                Some(c) if is_alphanumeric(c) => {}
                _ => {
                    self.backup();
                    break c;
                }
            }
        };
        if !self.at_terminator() {
            return self.error(format!("bad character {}", go_unicode_opt(last)));
        }
        self.emit(kind);
        State::InsideAction
    }

    fn at_terminator(&mut self) -> bool {
        match self.peek() {
            None => true,
            Some(c) if is_space(c) => true,
            Some('.' | ',' | '|' | ':' | ')' | '(') => true,
            Some(_) => self.rest().starts_with(RIGHT_DELIM),
        }
    }

    /// A `"…"` string or `'…'` character constant (escapes are checked by the parser).
    fn lex_quoted(&mut self, quote: char, kind: Kind, what: &str) -> State {
        loop {
            match self.next() {
                Some('\\') => match self.next() {
                    Some(c) if c != '\n' => {}
                    _ => return self.error(format!("unterminated {what}")),
                },
                None | Some('\n') => return self.error(format!("unterminated {what}")),
                Some(c) if c == quote => break,
                Some(_) => {}
            }
        }
        self.emit(kind);
        State::InsideAction
    }

    fn lex_raw_quote(&mut self) -> State {
        loop {
            match self.next() {
                None => return self.error("unterminated raw quoted string".into()),
                Some('`') => break,
                Some(_) => {}
            }
        }
        self.emit(Kind::RawString);
        State::InsideAction
    }

    fn lex_number(&mut self) -> State {
        if !self.scan_number() {
            let text = go_quote(&self.input[self.start..self.pos]);
            return self.error(format!("bad number syntax: {text}"));
        }
        if matches!(self.peek(), Some('+' | '-')) {
            if !self.scan_number() || !self.input[..self.pos].ends_with('i') {
                let text = go_quote(&self.input[self.start..self.pos]);
                return self.error(format!("bad number syntax: {text}"));
            }
            self.emit(Kind::Complex);
        } else {
            self.emit(Kind::Number);
        }
        State::InsideAction
    }

    fn scan_number(&mut self) -> bool {
        self.accept("+-");
        let mut digits = "0123456789_";
        if self.accept("0") {
            if self.accept("xX") {
                digits = "0123456789abcdefABCDEF_";
            } else if self.accept("oO") {
                digits = "01234567_";
            } else if self.accept("bB") {
                digits = "01_";
            }
        }
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if digits.len() == 11 && self.accept("eE") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        if digits.len() == 23 && self.accept("pP") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        self.accept("i");
        if matches!(self.peek(), Some(c) if is_alphanumeric(c)) {
            self.next();
            return false;
        }
        true
    }
}

fn leading_space_len(s: &str) -> usize {
    s.len() - s.trim_start_matches(SPACE_CHARS).len()
}

// ---------------------------------------------------------------------------------------------
// Parser

/// What the checks need to know of a parsed node: `{{end}}`/`{{else}}` close a list, and a list
/// is empty (Go's `IsEmptyTree`) when it holds only blank text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    /// Text, an action, a control structure or a template call.
    Tree(GoNode),
    End,
    Else,
}

/// An operand's kind (Go's node types that the checks distinguish).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Operand {
    Bool(bool),
    Dot,
    Nil,
    Number(String),
    String(String),
    Field(Vec<String>),
    Variable(Vec<String>),
    Identifier,
    Pipe(Pipeline),
    Chain,
}

impl Operand {
    /// Go's `Node.String()` for the literal kinds.
    fn text(&self) -> String {
        match self {
            Operand::Bool(b) => b.to_string(),
            Operand::Dot => ".".into(),
            Operand::Nil => "nil".into(),
            Operand::Number(s) | Operand::String(s) => s.clone(),
            _ => String::new(),
        }
    }

    /// The argument this operand is in the tree.
    fn into_arg(self) -> Arg {
        match self {
            Operand::Field(ident) => Arg::Field(ident),
            Operand::Variable(ident) => Arg::Variable(ident),
            Operand::Pipe(pipe) => Arg::Pipe(pipe),
            _ => Arg::Other,
        }
    }

    fn is_literal(&self) -> bool {
        matches!(
            self,
            Operand::Bool(_)
                | Operand::Dot
                | Operand::Nil
                | Operand::Number(_)
                | Operand::String(_)
        )
    }
}

/// Per-tree parser state (Go keeps a lookahead buffer per `Tree`; `{{define}}` and `{{block}}`
/// parse with a fresh one over the same lexer).
struct Tree {
    token: [Item; 3],
    peek_count: usize,
    vars: Vec<String>,
    range_depth: usize,
    action_line: usize,
    depth: usize,
}

impl Tree {
    fn new() -> Tree {
        Tree {
            token: [
                Item::placeholder(),
                Item::placeholder(),
                Item::placeholder(),
            ],
            peek_count: 0,
            vars: vec!["$".into()],
            range_depth: 0,
            action_line: 0,
            depth: 0,
        }
    }
}

struct Parser<'a> {
    lex: Lexer<'a>,
    funcs: &'a [&'a str],
    trees: Vec<Tree>,
    /// Template name → whether its tree is empty.
    defined: HashMap<String, bool>,
    found: Parsed,
}

type Result<T, E = SyntaxError> = std::result::Result<T, E>;

impl<'a> Parser<'a> {
    fn tree(&mut self) -> &mut Tree {
        self.trees.last_mut().expect("a tree is being parsed")
    }

    fn next(&mut self) -> Item {
        let t = self.trees.last_mut().expect("a tree is being parsed");
        if t.peek_count > 0 {
            t.peek_count -= 1;
        } else {
            t.token[0] = self.lex.next_item();
        }
        t.token[t.peek_count].clone()
    }

    fn backup(&mut self) {
        self.tree().peek_count += 1;
    }

    fn backup2(&mut self, t1: Item) {
        let t = self.tree();
        t.token[1] = t1;
        t.peek_count = 2;
    }

    fn backup3(&mut self, t2: Item, t1: Item) {
        let t = self.tree();
        t.token[1] = t1;
        t.token[2] = t2;
        t.peek_count = 3;
    }

    fn peek(&mut self) -> Item {
        let t = self.trees.last_mut().expect("a tree is being parsed");
        if t.peek_count > 0 {
            return t.token[t.peek_count - 1].clone();
        }
        t.peek_count = 1;
        t.token[0] = self.lex.next_item();
        t.token[0].clone()
    }

    fn next_non_space(&mut self) -> Item {
        loop {
            let token = self.next();
            if token.kind != Kind::Space {
                return token;
            }
        }
    }

    fn peek_non_space(&mut self) -> Item {
        let token = self.next_non_space();
        self.backup();
        token
    }

    fn error<T>(&mut self, message: impl fmt::Display) -> Result<T> {
        let line = self.tree().token[0].line;
        Err(SyntaxError(format!("template: :{line}: {message}")))
    }

    fn expect(&mut self, kind: Kind, context: &str) -> Result<Item> {
        let token = self.next_non_space();
        if token.kind != kind {
            return self.unexpected(&token, context);
        }
        Ok(token)
    }

    fn unexpected<T>(&mut self, token: &Item, context: &str) -> Result<T> {
        if token.kind == Kind::Error {
            let action_line = self.tree().action_line;
            let mut extra = String::new();
            if action_line != 0 && action_line != token.line {
                extra = format!(" in action started at :{action_line}");
                if token.val.ends_with(" action") {
                    extra = extra[" in action".len()..].to_owned();
                }
            }
            return self.error(format_args!("{token}{extra}"));
        }
        self.error(format_args!("unexpected {token} in {context}"))
    }

    fn has_function(&self, name: &str) -> bool {
        GO_BUILTINS.contains(&name) || self.funcs.contains(&name)
    }

    /// Records a finished tree under `name`, as Go's `Tree.add`.
    fn add(&mut self, name: String, empty: bool) -> Result<()> {
        match self.defined.get(&name) {
            Some(false) if !empty => self.error(format_args!(
                "template: multiple definition of template {}",
                go_quote(&name)
            )),
            Some(false) => Ok(()),
            _ => {
                self.defined.insert(name, empty);
                Ok(())
            }
        }
    }

    fn parse_top(&mut self) -> Result<Vec<GoNode>> {
        self.trees.push(Tree::new());
        let mut empty = true;
        let mut root = Vec::new();
        while self.peek().kind != Kind::Eof {
            if self.peek().kind == Kind::LeftDelim {
                let delim = self.next();
                if self.next_non_space().kind == Kind::Define {
                    self.trees.push(Tree::new());
                    let result = self.parse_definition();
                    self.trees.pop();
                    result?;
                    continue;
                }
                self.backup2(delim);
            }
            match self.text_or_action()? {
                node @ (Node::End | Node::Else) => {
                    return self.error(format_args!("unexpected {}", node_text(&node)));
                }
                Node::Tree(node) => {
                    empty &= node_is_empty(&node);
                    root.push(node);
                }
            }
        }
        self.add(String::new(), empty)?;
        Ok(root)
    }

    fn parse_definition(&mut self) -> Result<()> {
        const CONTEXT: &str = "define clause";
        let name = self.next_non_space();
        if name.kind != Kind::String && name.kind != Kind::RawString {
            return self.unexpected(&name, CONTEXT);
        }
        let name = match go_unquote(&name.val) {
            Ok(s) => s,
            Err(e) => return self.error(e),
        };
        self.expect(Kind::RightDelim, CONTEXT)?;
        let (nodes, empty, end) = self.item_list()?;
        if end != Node::End {
            return self.error(format_args!("unexpected {} in {CONTEXT}", node_text(&end)));
        }
        self.add(name.clone(), empty)?;
        self.found.definitions.push((name, nodes));
        Ok(())
    }

    /// Nodes up to `{{end}}` or `{{else}}` (returned); whether the list is empty.
    fn item_list(&mut self) -> Result<(Vec<GoNode>, bool, Node)> {
        let mut empty = true;
        let mut nodes = Vec::new();
        while self.peek_non_space().kind != Kind::Eof {
            match self.text_or_action()? {
                node @ (Node::End | Node::Else) => return Ok((nodes, empty, node)),
                Node::Tree(node) => {
                    empty &= node_is_empty(&node);
                    nodes.push(node);
                }
            }
        }
        self.error("unexpected EOF")
    }

    fn text_or_action(&mut self) -> Result<Node> {
        let token = self.next_non_space();
        match token.kind {
            Kind::Text => Ok(Node::Tree(GoNode::Text(token.val))),
            Kind::LeftDelim => {
                self.tree().action_line = token.line;
                let node = self.action();
                self.tree().action_line = 0;
                node
            }
            _ => self.unexpected(&token, "input"),
        }
    }

    fn action(&mut self) -> Result<Node> {
        let token = self.next_non_space();
        match token.kind {
            Kind::Block => return self.block_control(),
            Kind::Break | Kind::Continue => {
                let word = if token.kind == Kind::Break {
                    "break"
                } else {
                    "continue"
                };
                let next = self.next_non_space();
                if next.kind != Kind::RightDelim {
                    return self.unexpected(&next, &format!("{{{{{word}}}}}"));
                }
                if self.tree().range_depth == 0 {
                    return self.error(format_args!("{{{{{word}}}}} outside {{{{range}}}}"));
                }
                return Ok(Node::Tree(GoNode::Loop));
            }
            Kind::Else => return self.else_control(),
            Kind::End => {
                self.expect(Kind::RightDelim, "end")?;
                return Ok(Node::End);
            }
            Kind::If => return self.control("if"),
            Kind::Range => return self.control("range"),
            Kind::Template => return self.template_control(),
            Kind::With => return self.control("with"),
            _ => {}
        }
        self.backup();
        let pipe = self.pipeline("command", Kind::RightDelim)?;
        Ok(Node::Tree(GoNode::Action(pipe)))
    }

    fn pipeline(&mut self, context: &str, end: Kind) -> Result<Pipeline> {
        let mut decls = 0;
        let mut commands: Vec<Operand> = Vec::new();
        let mut pipe = Pipeline::default();
        loop {
            let v = self.peek_non_space();
            if v.kind != Kind::Variable {
                break;
            }
            self.next();
            let after_variable = self.peek();
            let next = self.peek_non_space();
            if next.kind == Kind::Assign || next.kind == Kind::Declare {
                self.next_non_space();
                self.tree().vars.push(variable_name(&v.val));
                break;
            } else if next.kind == Kind::Char && next.val == "," {
                self.next_non_space();
                decls += 1;
                self.tree().vars.push(variable_name(&v.val));
                if context == "range" && decls < 2 {
                    match self.peek_non_space().kind {
                        Kind::Variable | Kind::RightDelim | Kind::RightParen => continue,
                        _ => return self.error("range can only initialize variables"),
                    }
                }
                return self.error(format_args!("too many declarations in {context}"));
            } else if after_variable.kind == Kind::Space {
                self.backup3(v, after_variable);
                break;
            } else {
                self.backup2(v);
                break;
            }
        }
        loop {
            let token = self.next_non_space();
            match token.kind {
                k if k == end => {
                    if commands.is_empty() {
                        return self.error(format_args!("missing value for {context}"));
                    }
                    for (i, first) in commands.iter().enumerate().skip(1) {
                        if first.is_literal() {
                            return self.error(format_args!(
                                "non executable command in pipeline stage {}",
                                i + 1
                            ));
                        }
                    }
                    return Ok(pipe);
                }
                Kind::Bool
                | Kind::CharConstant
                | Kind::Complex
                | Kind::Dot
                | Kind::Field
                | Kind::Identifier
                | Kind::Number
                | Kind::Nil
                | Kind::RawString
                | Kind::String
                | Kind::Variable
                | Kind::LeftParen => {
                    self.backup();
                    let (first, args) = self.command()?;
                    commands.push(first);
                    pipe.commands.push(args);
                }
                _ => return self.unexpected(&token, context),
            }
        }
    }

    /// Parses a command; returns its first operand's kind and its arguments.
    fn command(&mut self) -> Result<(Operand, Vec<Arg>)> {
        let mut first = None;
        let mut args = Vec::new();
        loop {
            self.peek_non_space();
            if let Some(operand) = self.operand()? {
                match first {
                    None => {
                        args.push(operand.clone().into_arg());
                        first = Some(operand);
                    }
                    Some(_) => args.push(operand.into_arg()),
                }
            }
            let token = self.next();
            match token.kind {
                Kind::Space => continue,
                Kind::RightDelim | Kind::RightParen => self.backup(),
                Kind::Pipe => {}
                _ => return self.unexpected(&token, "operand"),
            }
            break;
        }
        match first {
            Some(operand) => Ok((operand, args)),
            None => self.error("empty command"),
        }
    }

    fn operand(&mut self) -> Result<Option<Operand>> {
        let Some(node) = self.term()? else {
            return Ok(None);
        };
        if self.peek().kind != Kind::Field {
            return Ok(Some(node));
        }
        let mut fields = Vec::new();
        while self.peek().kind == Kind::Field {
            fields.push(field_name(&self.next().val));
        }
        match node {
            Operand::Field(mut ident) => {
                ident.append(&mut fields);
                Ok(Some(Operand::Field(ident)))
            }
            Operand::Variable(mut ident) => {
                ident.append(&mut fields);
                Ok(Some(Operand::Variable(ident)))
            }
            literal if literal.is_literal() => self.error(format_args!(
                "unexpected . after term {}",
                go_quote(&literal.text())
            )),
            _ => Ok(Some(Operand::Chain)),
        }
    }

    fn term(&mut self) -> Result<Option<Operand>> {
        let token = self.next_non_space();
        let operand = match token.kind {
            Kind::Identifier => {
                if !self.has_function(&token.val) {
                    return self.error(format_args!(
                        "function {} not defined",
                        go_quote(&token.val)
                    ));
                }
                Operand::Identifier
            }
            Kind::Dot => Operand::Dot,
            Kind::Nil => Operand::Nil,
            Kind::Variable => {
                let name = variable_name(&token.val);
                if !self.tree().vars.contains(&name) {
                    return self.error(format_args!("undefined variable {}", go_quote(&name)));
                }
                Operand::Variable(vec![token.val])
            }
            Kind::Field => Operand::Field(vec![field_name(&token.val)]),
            Kind::Bool => Operand::Bool(token.val == "true"),
            Kind::CharConstant | Kind::Complex | Kind::Number => {
                if let Err(e) = check_number(&token.val, token.kind) {
                    return self.error(e);
                }
                Operand::Number(token.val)
            }
            Kind::LeftParen => {
                self.enter()?;
                let result = self.pipeline("parenthesized pipeline", Kind::RightParen);
                self.tree().depth -= 1;
                Operand::Pipe(result?)
            }
            Kind::String | Kind::RawString => {
                if let Err(e) = go_unquote(&token.val) {
                    return self.error(e);
                }
                Operand::String(token.val)
            }
            _ => {
                self.backup();
                return Ok(None);
            }
        };
        Ok(Some(operand))
    }

    /// One more level of nesting, refused past [`MAX_DEPTH`].
    fn enter(&mut self) -> Result<()> {
        if self.tree().depth >= MAX_DEPTH {
            return self.error("max expression depth exceeded");
        }
        self.tree().depth += 1;
        Ok(())
    }

    /// `if`, `range` and `with`: pipeline, list, optional else list (or else-if/else-with chain).
    fn control(&mut self, context: &str) -> Result<Node> {
        self.enter()?;
        let vars = self.tree().vars.len();
        let result = self.control_body(context);
        let tree = self.tree();
        tree.vars.truncate(vars);
        tree.depth -= 1;
        let branch = result?;
        Ok(Node::Tree(match context {
            "if" => GoNode::If(branch),
            "range" => GoNode::Range(branch),
            _ => GoNode::With(branch),
        }))
    }

    fn control_body(&mut self, context: &str) -> Result<Branch> {
        let pipe = self.pipeline(context, Kind::RightDelim)?;
        let ranging = context == "range";
        if ranging {
            self.tree().range_depth += 1;
        }
        let listed = self.item_list();
        if ranging {
            self.tree().range_depth -= 1;
        }
        let (list, _, next) = listed?;
        let mut else_list = None;
        if next == Node::Else {
            let chained = match (context, self.peek().kind) {
                ("if", Kind::If) => Some("if"),
                ("with", Kind::With) => Some("with"),
                _ => None,
            };
            if let Some(inner) = chained {
                self.next();
                if let Node::Tree(node) = self.control(inner)? {
                    else_list = Some(vec![node]);
                }
            } else {
                let (nodes, _, next) = self.item_list()?;
                if next != Node::End {
                    return self.error(format_args!("expected end; found {}", node_text(&next)));
                }
                else_list = Some(nodes);
            }
        }
        Ok(Branch {
            pipe,
            list,
            else_list,
        })
    }

    fn else_control(&mut self) -> Result<Node> {
        let peek = self.peek_non_space();
        if peek.kind == Kind::If || peek.kind == Kind::With {
            return Ok(Node::Else);
        }
        self.expect(Kind::RightDelim, "else")?;
        Ok(Node::Else)
    }

    fn template_name(&mut self, token: &Item, context: &str) -> Result<String> {
        match token.kind {
            Kind::String | Kind::RawString => match go_unquote(&token.val) {
                Ok(name) => Ok(name),
                Err(e) => self.error(e),
            },
            _ => self.unexpected(token, context),
        }
    }

    fn block_control(&mut self) -> Result<Node> {
        const CONTEXT: &str = "block clause";
        let token = self.next_non_space();
        let name = self.template_name(&token, CONTEXT)?;
        let pipe = self.pipeline(CONTEXT, Kind::RightDelim)?;
        // The block's body is a tree of its own (fresh lookahead and variables), nested here.
        let depth = self.tree().depth + 1;
        if depth > MAX_DEPTH {
            return self.error("max expression depth exceeded");
        }
        let mut body = Tree::new();
        body.depth = depth;
        self.trees.push(body);
        let listed = self.item_list();
        self.trees.pop();
        let (nodes, empty, end) = listed?;
        if end != Node::End {
            return self.error(format_args!("unexpected {} in {CONTEXT}", node_text(&end)));
        }
        self.add(name.clone(), empty)?;
        self.found.definitions.push((name, nodes));
        Ok(Node::Tree(GoNode::Template(Some(pipe))))
    }

    fn template_control(&mut self) -> Result<Node> {
        const CONTEXT: &str = "template clause";
        let token = self.next_non_space();
        self.template_name(&token, CONTEXT)?;
        let pipe = if self.next_non_space().kind != Kind::RightDelim {
            self.backup();
            Some(self.pipeline(CONTEXT, Kind::RightDelim)?)
        } else {
            self.found.template_without_pipeline = true;
            None
        };
        Ok(Node::Tree(GoNode::Template(pipe)))
    }
}

/// The variable a `$name` token refers to (Go splits on `.`; the lexer never includes one).
fn variable_name(token: &str) -> String {
    token.split('.').next().unwrap_or(token).to_owned()
}

/// A field token's name (`.Messages` → `Messages`).
fn field_name(token: &str) -> String {
    token.strip_prefix('.').unwrap_or(token).to_owned()
}

fn node_text(node: &Node) -> &'static str {
    match node {
        Node::End => "{{end}}",
        Node::Else => "{{else}}",
        _ => "",
    }
}

/// Go's `IsEmptyTree` for one node: only blank text is empty.
fn node_is_empty(node: &GoNode) -> bool {
    matches!(node, GoNode::Text(text) if text.trim().is_empty())
}

// ---------------------------------------------------------------------------------------------
// What Ollama reads from the tree

impl Parsed {
    /// Ollama's `Template.Vars()` of the template its `template.Parse` returns: every field and
    /// variable name in every template of the set (pipelines, not declarations; nothing inside
    /// a chain such as `(x).A`), lower-cased, sorted, without repeats; `"response"` is among
    /// them when the text names neither messages nor a response (Parse appends
    /// `{{ .Response }}` then). `None` when Ollama's Parse fails on a `{{template}}` without a
    /// pipeline.
    pub fn vars(&self) -> Option<Vec<String>> {
        if self.template_without_pipeline {
            return None;
        }
        let mut names = std::collections::BTreeSet::new();
        let mut collect = |nodes: &[GoNode]| {
            walk_nodes(nodes, &mut |arg| {
                if let Arg::Field(ident) | Arg::Variable(ident) = arg {
                    names.extend(ident.iter().map(|name| kiln_go::strings::to_lower(name)));
                }
            })
        };
        collect(&self.root);
        for (_, nodes) in &self.definitions {
            collect(nodes);
        }
        if !names.contains("messages") && !names.contains("response") {
            names.insert("response".to_owned());
        }
        Some(names.into_iter().collect())
    }

    /// Ollama's `thinking.InferTags`: for each `.Thinking` field in the main template inside a
    /// `range` over `.Messages` (its nearest enclosing range), the first and last nodes of the
    /// nearest enclosing list, when they are text, trimmed, become the opening and closing tags
    /// (a later match overwrites an earlier one, one side at a time, as Ollama's walk does).
    pub fn thinking_tags(&self) -> (String, String) {
        let mut finder = TagFinder::default();
        finder.list(&self.root);
        (finder.opening, finder.closing)
    }
}

/// Calls `f` on every argument of every pipeline under `nodes`, in tree order.
fn walk_nodes(nodes: &[GoNode], f: &mut dyn FnMut(&Arg)) {
    for node in nodes {
        match node {
            GoNode::Text(_) | GoNode::Loop | GoNode::Template(None) => {}
            GoNode::Action(pipe) | GoNode::Template(Some(pipe)) => walk_pipe(pipe, f),
            GoNode::If(branch) | GoNode::Range(branch) | GoNode::With(branch) => {
                walk_pipe(&branch.pipe, f);
                walk_nodes(&branch.list, f);
                if let Some(nodes) = &branch.else_list {
                    walk_nodes(nodes, f);
                }
            }
        }
    }
}

fn walk_pipe(pipe: &Pipeline, f: &mut dyn FnMut(&Arg)) {
    for arg in pipe.commands.iter().flatten() {
        f(arg);
        if let Arg::Pipe(inner) = arg {
            walk_pipe(inner, f);
        }
    }
}

/// The walk of [`Parsed::thinking_tags`]: the innermost enclosing range and list as it goes.
#[derive(Default)]
struct TagFinder<'a> {
    ranges: Vec<&'a Branch>,
    lists: Vec<&'a [GoNode]>,
    opening: String,
    closing: String,
}

impl<'a> TagFinder<'a> {
    fn list(&mut self, nodes: &'a [GoNode]) {
        self.lists.push(nodes);
        for node in nodes {
            match node {
                GoNode::Text(_) | GoNode::Loop | GoNode::Template(None) => {}
                GoNode::Action(pipe) | GoNode::Template(Some(pipe)) => self.pipe(pipe),
                GoNode::If(branch) | GoNode::With(branch) => self.branch(branch),
                GoNode::Range(branch) => {
                    self.ranges.push(branch);
                    self.branch(branch);
                    self.ranges.pop();
                }
            }
        }
        self.lists.pop();
    }

    fn branch(&mut self, branch: &'a Branch) {
        self.pipe(&branch.pipe);
        self.list(&branch.list);
        if let Some(nodes) = &branch.else_list {
            self.list(nodes);
        }
    }

    fn pipe(&mut self, pipe: &'a Pipeline) {
        walk_pipe(pipe, &mut |arg| {
            let Arg::Field(ident) = arg else { return };
            if ident.first().map(String::as_str) != Some("Thinking") {
                return;
            }
            let Some(range) = self.ranges.last() else {
                return;
            };
            if !pipe_names_field(&range.pipe, "Messages") {
                return;
            }
            if let Some(list) = self.lists.last() {
                if let Some(GoNode::Text(text)) = list.first() {
                    self.opening = text.trim().to_owned();
                }
                if let Some(GoNode::Text(text)) = list.last() {
                    self.closing = text.trim().to_owned();
                }
            }
        });
    }
}

/// Whether some argument of `pipe` (or of a pipeline in parentheses in it) is a field whose
/// first name is `name`.
fn pipe_names_field(pipe: &Pipeline, name: &str) -> bool {
    let mut found = false;
    walk_pipe(pipe, &mut |arg| {
        if let Arg::Field(ident) = arg {
            found |= ident.first().map(String::as_str) == Some(name);
        }
    });
    found
}

// ---------------------------------------------------------------------------------------------
// Go's literal syntax

/// Go's `newNumber` checks on a number, complex or character-constant token.
fn check_number(text: &str, kind: Kind) -> Result<(), String> {
    match kind {
        Kind::CharConstant => {
            let (_, tail) = unquote_char(&text[1..], '\'').map_err(str::to_owned)?;
            if tail != "'" {
                return Err(format!("malformed character constant: {text}"));
            }
            return Ok(());
        }
        Kind::Complex => {
            // `1+2i`: both parts must be numbers (Go scans it with fmt.Sscan).
            let split = text[1..]
                .find(['+', '-'])
                .map(|i| i + 1)
                .filter(|&i| !matches!(text.as_bytes()[i - 1], b'e' | b'E' | b'p' | b'P'));
            let ok = split.is_some_and(|i| {
                parse_float64_finite(&text[..i]).is_some()
                    && parse_float64_finite(&text[i..text.len() - 1]).is_some()
            });
            return if ok {
                Ok(())
            } else {
                Err(format!("illegal number syntax: {}", go_quote(text)))
            };
        }
        _ => {}
    }
    if let Some(imaginary) = text.strip_suffix('i')
        && parse_float64_finite(imaginary).is_some()
    {
        return Ok(());
    }
    if parse_int_or_uint_base0(text).is_ok() {
        return Ok(());
    }
    if let Some(_f) = parse_float64_finite(text) {
        if !text.contains(['.', 'e', 'E', 'p', 'P']) {
            return Err(format!("integer overflow: {}", go_quote(text)));
        }
        return Ok(());
    }
    Err(format!("illegal number syntax: {}", go_quote(text)))
}

/// Go's `%#U` of the lexer's next rune, `None` being its EOF (-1).
fn go_unicode_opt(c: Option<char>) -> String {
    match c {
        Some(c) => format_sharp_u(c),
        None => "U+FFFFFFFFFFFFFFFF".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, &[]).unwrap_err().0
    }

    #[test]
    fn ollamas_bad_templates_fail_with_gos_messages() {
        assert_eq!(err("{{ .Prompt"), "template: :1: unclosed action");
        assert_eq!(err("{{ if .Prompt }}"), "template: :1: unexpected EOF");
        assert_eq!(
            err("{{ Prompt }}"),
            "template: :1: function \"Prompt\" not defined"
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let parens = format!("{{{{ {}.{} }}}}", "(".repeat(100_000), ")".repeat(100_000));
        assert_eq!(err(&parens), "template: :1: max expression depth exceeded");
        let ifs = format!(
            "{}x{}",
            "{{if .}}".repeat(100_000),
            "{{end}}".repeat(100_000)
        );
        assert_eq!(err(&ifs), "template: :1: max expression depth exceeded");
        let fine = format!(
            "{}x{}",
            "{{if .}}".repeat(MAX_DEPTH),
            "{{end}}".repeat(MAX_DEPTH)
        );
        let parens = format!(
            "{{{{ {}.{} }}}}",
            "(".repeat(MAX_DEPTH - 1),
            ")".repeat(MAX_DEPTH - 1)
        );
        // On a thread with the default 2 MiB stack, whatever the build profile.
        let parsed = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || (parse(&fine, &[]).is_ok(), parse(&parens, &[]).is_ok()))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(parsed, (true, true));
    }

    #[test]
    fn else_with_chains_parse_as_in_go_1_23() {
        assert!(parse("{{with .A}}a{{else with .B}}b{{else}}c{{end}}", &[]).is_ok());
        assert!(parse("{{if .A}}a{{else if .B}}b{{else}}c{{end}}", &[]).is_ok());
        assert_eq!(
            err("{{range .A}}a{{else with .B}}b{{end}}"),
            "template: :1: unexpected <with> in input"
        );
    }

    proptest::proptest! {
        /// Any input, however broken, gets a verdict and never a panic.
        #[test]
        fn arbitrary_input_never_panics(
            pieces in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just("{{".to_owned()),
                    proptest::strategy::Just("}}".to_owned()),
                    proptest::strategy::Just("{{- ".to_owned()),
                    proptest::strategy::Just(" -}}".to_owned()),
                    proptest::strategy::Just("{{/*".to_owned()),
                    "[ -~\\n\\té\u{2603}]{0,6}",
                ],
                0..40,
            ),
        ) {
            let text: String = pieces.concat();
            let _ = parse(&text, OLLAMA_FUNCS_FOR_TESTS);
        }
    }

    const OLLAMA_FUNCS_FOR_TESTS: &[&str] = &["json"];

    #[test]
    fn numbers_follow_go() {
        for ok in [
            "1", "-1", "0x1F", "0o17", "0b101", "1_000", "1.5e3", "0x1p-2", "017", "1i", ".5",
        ] {
            assert_eq!(check_number(ok, Kind::Number), Ok(()), "{ok}");
        }
        assert_eq!(
            check_number("99999999999999999999", Kind::Number),
            Err("integer overflow: \"99999999999999999999\"".into())
        );
        assert_eq!(
            check_number("1e400", Kind::Number),
            Err("illegal number syntax: \"1e400\"".into())
        );
        assert_eq!(check_number("'a'", Kind::CharConstant), Ok(()));
        assert!(check_number("1+2i", Kind::Complex).is_ok());
    }
}
