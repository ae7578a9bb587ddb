//! Sends real mail over SMTP to a private mailpit and reads it back through
//! `testkit::Mailpit`'s HTTP API. The SMTP client is written out here, so
//! the server is checked independently of any mail library.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::TcpStream;
use std::time::Duration;

use testkit::Mailpit;
use testkit::mailpit::ChaosTrigger;

/// A minimal SMTP client: one command, one (possibly multi-line) reply.
/// An unexpected reply code is an error carrying the server's text.
struct Smtp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

type IoResult<T> = std::io::Result<T>;

impl Smtp {
    /// Connects, checks the 220 greeting and says EHLO.
    fn connect(port: u16) -> IoResult<Smtp> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut smtp = Smtp {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        };
        let greeting = smtp.reply()?;
        check("the greeting", greeting, 220)?;
        smtp.expect("EHLO client.example.test", 250)?;
        Ok(smtp)
    }

    /// Reads one reply: `250-...` lines continue it, `250 ...` ends it.
    fn reply(&mut self) -> IoResult<(u16, String)> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("EOF after {text:?}"),
                ));
            }
            text.push_str(&line);
            let code = line.get(..3).and_then(|c| c.parse().ok());
            let Some(code) = code else {
                return Err(std::io::Error::other(format!("bad reply line {line:?}")));
            };
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, text));
            }
        }
    }

    /// Sends one command line and returns the reply's code and text.
    fn send(&mut self, line: &str) -> IoResult<(u16, String)> {
        // One write per command: `write!` would send the line and its CRLF
        // as two packets, and Nagle's algorithm would hold the second back
        // for the server's delayed ACK.
        self.writer.write_all(format!("{line}\r\n").as_bytes())?;
        self.reply()
    }

    /// Sends one command line and requires reply `code`.
    fn expect(&mut self, line: &str, code: u16) -> IoResult<String> {
        let reply = self.send(line)?;
        check(&format!("`{line}`"), reply, code)
    }

    /// One whole transaction; `data` uses `\n` line ends.
    fn mail(&mut self, from: &str, rcpts: &[&str], data: &str) -> IoResult<()> {
        self.expect(&format!("MAIL FROM:<{from}>"), 250)?;
        for rcpt in rcpts {
            self.expect(&format!("RCPT TO:<{rcpt}>"), 250)?;
        }
        self.expect("DATA", 354)?;
        let mut wire = String::new();
        for line in data.lines() {
            // Dot-stuffing: a leading dot is doubled so it cannot end DATA.
            if line.starts_with('.') {
                wire.push('.');
            }
            wire.push_str(line);
            wire.push_str("\r\n");
        }
        wire.push_str(".\r\n");
        self.writer.write_all(wire.as_bytes())?;
        let reply = self.reply()?;
        check("the end of DATA", reply, 250).map(drop)
    }
}

impl Smtp {
    /// A one-part message from sender@ to rcpt@, identified by `subject`.
    fn simple(&mut self, subject: &str) -> IoResult<()> {
        let data = format!(
            "From: sender@example.test\nTo: rcpt@example.test\nSubject: {subject}\n\
             Message-ID: <{subject}@example.test>\n\nbody of {subject}\n"
        );
        self.mail("sender@example.test", &["rcpt@example.test"], &data)
    }
}

fn check(what: &str, (got, text): (u16, String), want: u16) -> IoResult<String> {
    if got == want {
        Ok(text)
    } else {
        Err(std::io::Error::other(format!(
            "{what} answered {text:?}, expected {want}"
        )))
    }
}

#[test]
fn mail_sent_over_smtp_reads_back_through_the_api() {
    let mailpit = Mailpit::start().unwrap();
    assert!(mailpit.http_url().starts_with("http://127.0.0.1:"));
    assert_eq!(mailpit.message_count().unwrap(), 0);
    assert!(mailpit.messages().unwrap().is_empty());

    let data = "From: Alice <alice@example.test>\n\
        To: Bob <bob@example.test>\n\
        Cc: carol@example.test\n\
        Reply-To: replies@example.test\n\
        Subject: Hello from testkit\n\
        Message-ID: <hello-1@example.test>\n\
        Date: Mon, 01 Jan 2024 00:00:00 +0000\n\
        MIME-Version: 1.0\n\
        Content-Type: multipart/alternative; boundary=\"b1\"\n\
        \n\
        --b1\n\
        Content-Type: text/plain; charset=utf-8\n\
        \n\
        Plain body\n\
        .a line that starts with a dot\n\
        --b1\n\
        Content-Type: text/html; charset=utf-8\n\
        \n\
        <p>HTML body</p>\n\
        --b1--\n";
    let mut smtp = Smtp::connect(mailpit.smtp_port()).unwrap();
    let rcpts = [
        "bob@example.test",
        "carol@example.test",
        "dave@example.test",
    ];
    smtp.mail("alice@example.test", &rcpts, data).unwrap();
    // Received times order the list; keep them apart.
    std::thread::sleep(Duration::from_millis(20));
    smtp.simple("second").unwrap();
    smtp.expect("QUIT", 221).unwrap();

    let messages = mailpit.messages().unwrap();
    let subjects: Vec<&str> = messages.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(subjects, ["second", "Hello from testkit"], "newest first");
    assert_eq!(mailpit.message_count().unwrap(), 2);
    let hello = &messages[1];
    assert_eq!(hello.from, "alice@example.test");
    assert_eq!(hello.to, ["bob@example.test"]);
    assert_eq!(hello.message_id, "hello-1@example.test");

    let detail = mailpit.message(&hello.id).unwrap();
    assert_eq!(detail.id, hello.id);
    assert_eq!(detail.subject, "Hello from testkit");
    assert_eq!(detail.from, "alice@example.test");
    assert_eq!(detail.to, ["bob@example.test"]);
    assert_eq!(detail.cc, ["carol@example.test"]);
    assert_eq!(detail.bcc, ["dave@example.test"], "envelope-only recipient");
    assert_eq!(detail.reply_to, ["replies@example.test"]);
    assert_eq!(detail.message_id, "hello-1@example.test");
    // The body comes back as it went over the wire: CRLF line ends, and
    // the dot-stuffing undone.
    assert_eq!(
        detail.text.trim_end(),
        "Plain body\r\n.a line that starts with a dot"
    );
    assert_eq!(detail.html.trim_end(), "<p>HTML body</p>");

    assert!(mailpit.message("no-such-id").is_err());
    assert!(mailpit.message("NoSuchId").is_err());

    mailpit.delete_all().unwrap();
    assert_eq!(mailpit.message_count().unwrap(), 0);
    assert!(mailpit.messages().unwrap().is_empty());
}

#[test]
fn messages_reads_every_page() {
    let mailpit = Mailpit::start().unwrap();
    let mut smtp = Smtp::connect(mailpit.smtp_port()).unwrap();
    let n = 123;
    for i in 0..n {
        smtp.simple(&format!("m{i}")).unwrap();
    }
    smtp.expect("QUIT", 221).unwrap();

    let messages = mailpit.messages().unwrap();
    assert_eq!(messages.len(), n);
    assert_eq!(mailpit.message_count().unwrap(), n);
    let mut subjects: Vec<String> = messages.into_iter().map(|m| m.subject).collect();
    subjects.sort();
    let mut expected: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    expected.sort();
    assert_eq!(subjects, expected);
}

#[test]
fn chaos_triggers_fail_smtp_stages_on_demand() {
    let mailpit = Mailpit::start().unwrap();
    let port = mailpit.smtp_port();

    mailpit
        .set_chaos(ChaosTrigger::Recipient, 451, 100)
        .unwrap();
    let mut smtp = Smtp::connect(port).unwrap();
    smtp.expect("MAIL FROM:<sender@example.test>", 250).unwrap();
    let (code, text) = smtp.send("RCPT TO:<rcpt@example.test>").unwrap();
    assert_eq!(code, 451, "RCPT TO under chaos answered {text}");
    smtp.expect("RSET", 250).unwrap();

    mailpit.set_chaos(ChaosTrigger::Sender, 550, 100).unwrap();
    let (code, text) = smtp.send("MAIL FROM:<sender@example.test>").unwrap();
    assert_eq!(code, 550, "MAIL FROM under chaos answered {text}");
    smtp.expect("RSET", 250).unwrap();

    // --smtp-auth-accept-any takes any login over plain SMTP, until chaos.
    smtp.expect("AUTH PLAIN AHVzZXIAcGFzcw==", 235).unwrap();
    mailpit
        .set_chaos(ChaosTrigger::Authentication, 535, 100)
        .unwrap();
    let mut smtp = Smtp::connect(port).unwrap();
    let (code, text) = smtp.send("AUTH PLAIN AHVzZXIAcGFzcw==").unwrap();
    assert_eq!(code, 535, "AUTH under chaos answered {text}");

    mailpit.clear_chaos().unwrap();
    let mut smtp = Smtp::connect(port).unwrap();
    smtp.expect("AUTH PLAIN AHVzZXIAcGFzcw==", 235).unwrap();
    smtp.simple("after-chaos").unwrap();
    let messages = mailpit.messages().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].subject, "after-chaos");

    assert!(mailpit.set_chaos(ChaosTrigger::Sender, 250, 100).is_err());
    assert!(mailpit.set_chaos(ChaosTrigger::Sender, 451, 101).is_err());
}

#[test]
fn stop_refuses_and_restart_keeps_the_mail() {
    let mut mailpit = Mailpit::start().unwrap();
    let port = mailpit.smtp_port();
    let url = mailpit.http_url();
    let mut smtp = Smtp::connect(port).unwrap();
    smtp.simple("kept").unwrap();
    smtp.expect("QUIT", 221).unwrap();

    mailpit.stop().unwrap();
    let err = TcpStream::connect(("127.0.0.1", port)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    assert!(mailpit.messages().is_err());
    mailpit.stop().unwrap(); // idempotent

    mailpit.restart().unwrap();
    assert_eq!(mailpit.smtp_port(), port);
    assert_eq!(mailpit.http_url(), url);
    let messages = mailpit.messages().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].subject, "kept");
    let mut smtp = Smtp::connect(port).unwrap();
    smtp.simple("again").unwrap();
    assert_eq!(mailpit.message_count().unwrap(), 2);

    let pid = mailpit.process().unwrap().pid();
    drop(mailpit);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}
