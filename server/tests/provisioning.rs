//! Issue 23, item 6: the console's enrolment page shows the Android provisioning QR code
//! (android/README.md's admin-extras payload). Read back with an independent QR decoder
//! (`rqrr`) from the SVG the officer's browser draws, the payload provisions a phone end to
//! end: its trust root verifies, and the phone enrols with its token at its server URL over
//! loopback, bound to the holder the officer named. Without the APK settings the page says
//! which `serve` options are missing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::sync::Arc;

use baomi_core::agent::{Agent, enroll};
use baomi_core::compile::Platform;
use baomi_core::store::{HostFileKeyProvider, StoreOptions};
use baomi_core::sync::http::HttpTransport;
use baomi_core::time::Timestamp;
use baomi_server::console::officers::Role;
use baomi_server::db::Db;
use baomi_server::http::Listener;
use baomi_server::provisioning::Provisioning;
use baomi_server::upload_key::UploadKey;
use baomi_server::{Server, admin};

/// The dark squares of the `<path>` the SVG renderer draws (`M{x} {y}h{w}v{h}H{x}V{y}` per
/// module), rasterised one pixel per SVG unit, decoded by `rqrr`.
fn decode_svg(svg: &str) -> String {
    let num = |s: &str, key: &str| -> usize {
        let at = s.find(key).unwrap() + key.len();
        s[at..].split('"').next().unwrap().parse().unwrap()
    };
    let (w, h) = (num(svg, "width=\""), num(svg, "height=\""));
    let d = svg
        .split(" d=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let mut dark = vec![false; w * h];
    for m in d.split('M').filter(|m| !m.is_empty()) {
        let (xy, rest) = m.split_once('h').unwrap();
        let (x, y) = xy.split_once(' ').unwrap();
        let (x, y): (usize, usize) = (x.parse().unwrap(), y.parse().unwrap());
        let (mw, rest) = rest.split_once('v').unwrap();
        let mh: usize = rest.split('H').next().unwrap().parse().unwrap();
        let mw: usize = mw.parse().unwrap();
        for yy in y..y + mh {
            for xx in x..x + mw {
                dark[yy * w + xx] = true;
            }
        }
    }
    let mut img =
        rqrr::PreparedImage::prepare_from_greyscale(
            w,
            h,
            |x, y| if dark[y * w + x] { 0 } else { 255 },
        );
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code on the page");
    grids[0].decode().unwrap().1
}

fn minted_page(s: &Server, holder: &str) -> String {
    s.officer_add("陈静", Role::Admin, "correct horse battery staple")
        .ok();
    let (session, o) = s
        .officer_login("陈静", "correct horse battery staple")
        .unwrap();
    let r = s.handle_office(
        "POST",
        "/console/tokens",
        &[
            (
                "cookie".into(),
                format!("baomi_session={session}; baomi_lang=en"),
            ),
            (
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ),
        ],
        format!("csrf={}&holder={holder}", o.csrf).as_bytes(),
    );
    assert_eq!(r.status, 200);
    String::from_utf8(r.body).unwrap()
}

#[test]
fn the_enrolment_qr_code_provisions_and_enrols_a_phone() {
    for (label, url, _dir) in common::backends() {
        let dir = tempfile::tempdir().unwrap();
        let k = common::office_keys(dir.path());
        let server = Server::new(
            Db::open(&url, 2).unwrap(),
            Some(UploadKey::load(&k.upload_key_file).unwrap()),
            Timestamp::now,
        )
        .unwrap();
        server.publish_trust_root(&k.root).unwrap();
        // Without the APK settings: the page says what to set.
        let page = minted_page(&server, "li.na");
        assert!(page.contains("--provisioning-apk-url"), "{label}: {page}");
        // Served for real on loopback; the QR code names that address.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let server = Arc::new(server.with_provisioning(Provisioning {
            server_url: Some(format!("http://{addr}")),
            apk_url: Some("https://mdm.office.example/apk/baomi-1.0.apk".into()),
            apk_checksum: Some("gJD2YwtOiWJHkSMkkIfLRlj-quNqG1fb6v100QmzM9w".into()),
            ..Provisioning::default()
        }));
        let _listener = Listener::start(server.clone(), addr, None, 2).unwrap();
        let page = minted_page(&server, "li.na");
        assert!(!page.contains("provision-missing"), "{label}");
        let svg = page
            .split("<div id=\"qr\">")
            .nth(1)
            .unwrap()
            .split("</div>")
            .next()
            .unwrap();
        let payload: serde_json::Value = serde_json::from_str(&decode_svg(svg)).unwrap();
        assert_eq!(
            payload["android.app.extra.PROVISIONING_DEVICE_ADMIN_COMPONENT_NAME"],
            baomi_server::provisioning::DEFAULT_COMPONENT
        );
        let extras = &payload["android.app.extra.PROVISIONING_ADMIN_EXTRAS_BUNDLE"];
        let token = extras["cn.baomi.enrollment_token"].as_str().unwrap();
        assert!(page.contains(token), "the same token as shown");
        // The phone: provisioned from the extras alone, it enrols with the token.
        let phone = tempfile::tempdir().unwrap();
        let kek = HostFileKeyProvider::open_or_create(&phone.path().join("kek")).unwrap();
        let now = Timestamp::now();
        let mut agent = Agent::open(
            &phone.path().join("store"),
            &kek,
            StoreOptions::default(),
            Platform::Android,
            now,
        )
        .unwrap();
        let root = extras["cn.baomi.trust_root"].as_str().unwrap();
        agent.provision_trust_root(root.as_bytes(), now).unwrap();
        let base = extras["cn.baomi.server_url"].as_str().unwrap();
        let t = HttpTransport::new(base);
        enroll(&mut agent, &t, base, token, Platform::Android, now).unwrap();
        let row = admin::devices(&server)
            .unwrap()
            .into_iter()
            .find(|d| d.device_id == agent.store().device_id())
            .unwrap();
        assert_eq!(row.holder_name(), Some("li.na"), "{label}");
        // Spent: the same QR code enrols no second phone.
        let tokens = admin::tokens(&server).unwrap();
        let used = format!("used by {}", agent.store().device_id());
        assert!(tokens.iter().any(|t| t.state == used), "{tokens:?}");
    }
}
