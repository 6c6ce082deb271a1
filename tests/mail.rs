//! The SMTP adapter against a real SMTP server on loopback (`aiosmtpd`, pinned in
//! tests/requirements.txt and run from the project's virtualenv: the standard library's `smtpd`
//! is gone from Python 3.12), so the production mail path is exercised end to end.

mod common;

use std::process::Stdio;
use std::time::Duration;

use identity::EmailAddress;
use identity::signin::mail::{Mail, Mailer, SmtpMailer};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const SERVER: &str = r#"
import sys, time
from aiosmtpd.controller import Controller
class Sink:
    async def handle_DATA(self, server, session, envelope):
        sys.stdout.write('ENVELOPE %s -> %s\n' % (envelope.mail_from, ','.join(envelope.rcpt_tos)))
        sys.stdout.write(envelope.content.decode('utf-8', 'replace'))
        sys.stdout.write('\n.END\n')
        sys.stdout.flush()
        return '250 OK'
controller = Controller(Sink(), hostname='127.0.0.1', port=int(sys.argv[1]))
controller.start()
print('READY', flush=True)
time.sleep(60)
controller.stop()
"#;

#[tokio::test]
async fn smtp_mailer_delivers_through_a_real_smtp_server() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let mut server = Command::new(common::venv::bin("python"))
        .arg("-c")
        .arg(SERVER)
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the virtualenv's python runs the SMTP sink");
    let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.expect("server starts");
    assert_eq!(ready.expect("read").as_deref(), Some("READY"));

    let mailer = SmtpMailer::new(&format!("smtp://127.0.0.1:{port}"), "Countersign <no-reply@countersign.test>")
        .expect("mailer");
    let mail = Mail {
        to: EmailAddress::parse("ada@acme.example").expect("email"),
        subject: "Your sign-in code".into(),
        text: "Your code: 12345678".into(),
    };
    tokio::time::timeout(Duration::from_secs(20), mailer.send(&mail)).await.expect("in time").expect("sent");

    let mut received = String::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.expect("message arrives");
        let Some(line) = line.expect("read") else { break };
        if line == ".END" {
            break;
        }
        received.push_str(&line);
        received.push('\n');
    }
    assert!(received.contains("ENVELOPE no-reply@countersign.test -> ada@acme.example"), "{received}");
    assert!(received.contains("Subject: Your sign-in code"), "{received}");
    assert!(received.contains("Your code: 12345678"), "{received}");

    // A malformed URL or From address is refused at start-up, naming the setting but never
    // echoing the URL (it may carry a password).
    let e = SmtpMailer::new("ftp://user:hunter2@example.test", "x <a@b.c>").expect_err("bad url");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert!(SmtpMailer::new(&format!("smtp://127.0.0.1:{port}"), "not an address").is_err());
    server.kill().await.ok();
}
