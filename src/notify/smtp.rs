//! The e-mail channel: one multipart (plain text + HTML) message per notice to the owner's
//! address over SMTP (lettre, rustls), with `Message-ID: <notice.message_id>` so a resend after
//! a crash is recognisable as the same message.
//!
//! TLS is STARTTLS (required, not opportunistic) or implicit TLS, with certificate
//! verification always on; `insecure-plaintext` exists for loopback relays and tests only
//! (enforced by [`super::config`]). The password lives in lettre's `Credentials` and never in a
//! log line, an error or `Debug` output. One try per call; retries belong to
//! [`super::channels::Channels`].

use std::fmt;

use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::config::{SmtpConfig, SmtpTls};
use super::render::{self, RenderOptions};
use super::{Delivery, Error, Notice, Notifier};

/// Sends notices by e-mail.
pub struct SmtpNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    options: RenderOptions,
    endpoint: String,
    authenticated: bool,
    timeout: std::time::Duration,
    allowed_domains: Vec<String>,
}

impl fmt::Debug for SmtpNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpNotifier")
            .field("endpoint", &self.endpoint)
            .field("from", &self.from.to_string())
            .field("authenticated", &self.authenticated)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn tls_name(tls: SmtpTls) -> &'static str {
    match tls {
        SmtpTls::StartTls => "starttls",
        SmtpTls::Implicit => "tls",
        SmtpTls::InsecurePlaintext => "insecure-plaintext",
    }
}

impl SmtpNotifier {
    /// An e-mail channel with these settings. Reads the CA bundle, if any.
    pub fn new(config: &SmtpConfig, options: RenderOptions) -> Result<Self, Error> {
        let endpoint = format!("{}:{} ({})", config.host, config.port, tls_name(config.tls));
        let config_error = |what: &str, e: &dyn fmt::Display| {
            Error::Config(format!("smtp {endpoint}: {what}: {e}"))
        };
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| config_error("from address", &e))?;
        let tls = match config.tls {
            SmtpTls::InsecurePlaintext => Tls::None,
            mode => {
                let mut params = TlsParameters::builder(config.host.clone());
                if let Some(path) = &config.ca_bundle {
                    let pem = std::fs::read(path)
                        .map_err(|e| config_error(&format!("CA bundle {}", path.display()), &e))?;
                    let blocks = pem_certificates(&pem);
                    if blocks.is_empty() {
                        return Err(config_error(
                            &format!("CA bundle {}", path.display()),
                            &"no PEM certificate in the file",
                        ));
                    }
                    params = params.certificate_store(CertificateStore::None);
                    // Every certificate of the bundle is trusted, not only the first.
                    for block in blocks {
                        let cert = Certificate::from_pem(block.as_bytes()).map_err(|e| {
                            config_error(&format!("CA bundle {}", path.display()), &e)
                        })?;
                        params = params.add_root_certificate(cert);
                    }
                }
                let params = params.build_rustls().map_err(|e| config_error("TLS", &e))?;
                if mode == SmtpTls::Implicit {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port)
            .timeout(Some(config.timeout))
            .tls(tls);
        if let Some(auth) = &config.auth {
            builder = builder.credentials(Credentials::new(
                auth.username.clone(),
                auth.password.expose().to_string(),
            ));
        }
        Ok(SmtpNotifier {
            transport: builder.build(),
            from,
            options,
            endpoint,
            authenticated: config.auth.is_some(),
            timeout: config.timeout,
            allowed_domains: config.allowed_domains.clone(),
        })
    }

    /// The message for a notice: From, To (owner name and address), Subject, Message-ID,
    /// Date, and a multipart/alternative body with the plain text and the HTML.
    pub fn message(&self, notice: &Notice) -> Result<Message, Error> {
        let Some(address) = notice.owner.email.as_deref() else {
            return Err(Error::NoChannel {
                owner: notice.owner.name.clone(),
                contact: "email",
            });
        };
        let fail = |reason: String| Error::Smtp {
            recipient: address.to_string(),
            reason,
        };
        let to = Mailbox::new(
            Some(notice.owner.name.clone()),
            address
                .trim()
                .parse()
                .map_err(|e| fail(format!("not a valid address: {e}")))?,
        );
        if !self.allowed_domains.is_empty() {
            let domain = to.email.domain().to_ascii_lowercase();
            let allowed = self
                .allowed_domains
                .iter()
                .any(|d| domain == *d || domain.ends_with(&format!(".{d}")));
            if !allowed {
                return Err(Error::Config(format!(
                    "e-mail of owner {}: domain {domain:?} is not in MICROSEG_EMAIL_ALLOWED_DOMAINS",
                    notice.owner.name
                )));
            }
        }
        let rendered =
            render::render_with(notice, &self.options).map_err(|e| Error::Config(e.to_string()))?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(rendered.subject)
            .message_id(Some(format!("<{}>", notice.message_id)))
            .multipart(MultiPart::alternative_plain_html(
                rendered.text,
                rendered.html,
            ))
            .map_err(|e| fail(format!("building the message: {e}")))
    }
}

#[async_trait]
impl Notifier for SmtpNotifier {
    /// One SMTP transaction to `notice.owner.email`; one delivery when the server accepted it.
    async fn send(&self, notice: &Notice) -> Result<Vec<Delivery>, Error> {
        let message = self.message(notice)?;
        tracing::debug!(
            server = %self.endpoint,
            message_id = %notice.message_id,
            "Sending owner notice by e-mail"
        );
        let fail = |reason: String| Error::Smtp {
            recipient: notice.owner.email.clone().unwrap_or_default(),
            reason: format!("smtp {}: {reason}", self.endpoint),
        };
        // lettre's own timeout covers connecting only; a server that stops answering would
        // hold the reconcile forever, so the whole transaction has a deadline.
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(vec![Delivery {
                channel: "email",
                at: Timestamp::now(),
            }]),
            Ok(Err(e)) => Err(fail(crate::error_text::chain(&e))),
            Err(_) => Err(fail(format!("no answer within {:?}", self.timeout))),
        }
    }
}

/// Each `CERTIFICATE` PEM block of a bundle, as its own PEM text.
pub fn pem_certificates(pem: &[u8]) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest.get(start..).and_then(|r| r.find(END)) else {
            break;
        };
        let end = start + len + END.len();
        out.push(format!("{}\n", rest.get(start..end).unwrap_or_default()));
        rest = rest.get(end..).unwrap_or_default();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::config::{Secret, SmtpAuth};
    use crate::notify::{NoticeKind, examples};

    fn notifier() -> SmtpNotifier {
        let mut c = SmtpConfig::new(
            "127.0.0.1",
            SmtpTls::InsecurePlaintext,
            "microseg <microseg@example.com>",
        );
        c.auth = Some(SmtpAuth {
            username: "bot".to_string(),
            password: Secret::new("PASSWORD-123"),
        });
        SmtpNotifier::new(&c, RenderOptions::default()).unwrap()
    }

    #[test]
    fn message_carries_ids_subject_and_both_bodies() {
        let n = examples::notice(NoticeKind::Enforced);
        let raw = String::from_utf8(notifier().message(&n).unwrap().formatted()).unwrap();
        assert!(
            raw.contains(&format!("Message-ID: <{}>", n.message_id)),
            "{raw}"
        );
        assert!(
            raw.contains("To: \"Web Team\" <web-team@example.com>"),
            "{raw}"
        );
        assert!(raw.contains("Subject: [microseg] Shop web frontend: enforcement active since"));
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("text/plain") && raw.contains("text/html"));
        assert!(raw.contains("Date: "));
    }

    #[test]
    fn owners_addresses_outside_the_allowed_domains_are_refused() {
        let mut c = SmtpConfig::new(
            "127.0.0.1",
            SmtpTls::InsecurePlaintext,
            "microseg <microseg@example.com>",
        );
        c.allowed_domains = vec!["example.com".to_string()];
        let n = SmtpNotifier::new(&c, RenderOptions::default()).unwrap();
        let mut notice = examples::notice(NoticeKind::Enforced);
        for (address, ok) in [
            ("web-team@example.com", true),
            ("web-team@mail.example.com", true),
            ("web-team@EXAMPLE.COM", true),
            ("x@evil-example.com", false),
            ("x@example.com.evil.net", false),
        ] {
            notice.owner.email = Some(address.to_string());
            match n.message(&notice) {
                Ok(_) => assert!(ok, "{address} accepted"),
                Err(e) => {
                    assert!(!ok, "{address}: {e}");
                    assert!(
                        e.to_string().contains("MICROSEG_EMAIL_ALLOWED_DOMAINS"),
                        "{e}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_certificate_of_a_ca_bundle_is_read() {
        let a = rcgen::generate_simple_self_signed(vec!["a.example.com".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.example.com".into()]).unwrap();
        let bundle = format!("# first\n{}\nsome text\n{}", a.cert.pem(), b.cert.pem());
        let blocks = pem_certificates(bundle.as_bytes());
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[1].trim(), b.cert.pem().trim());
        for block in blocks {
            Certificate::from_pem(block.as_bytes()).unwrap();
        }
        assert!(pem_certificates(b"no pem here").is_empty());
    }

    #[test]
    fn debug_output_has_no_password() {
        let d = format!("{:?}", notifier());
        assert!(
            !d.contains("PASSWORD-123") && d.contains("authenticated: true"),
            "{d}"
        );
    }

    #[test]
    fn an_owner_without_email_has_no_email_channel() {
        let mut n = examples::notice(NoticeKind::Enforced);
        n.owner.email = None;
        assert!(matches!(
            notifier().message(&n),
            Err(Error::NoChannel {
                contact: "email",
                ..
            })
        ));
    }
}
