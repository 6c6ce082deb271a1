"""A SAML 2.0 identity provider for tests/saml.rs and tests/browser/saml.mjs: pysaml2's Server,
signing with xmlsec1, on loopback. It signs in whoever the test names; without a `user`, it
answers a login page where a person types their email address and presses Sign in.

    idp.py --key KEY.pem --cert CERT.pem --sp-metadata SP.xml [--sp-metadata ...]

Prints `PORT <n>` once listening on 127.0.0.1 (a free port). Routes:
  GET /metadata            the IdP's metadata (entity id, HTTP-Redirect SSO, signing certificate)
  GET /sso?SAMLRequest=…   answers the AuthnRequest with an auto-posting form to the SP's ACS
                           (a script submits it; without scripts, its Continue button).
      &user=EMAIL          who signs in; absent: the login page (a form back to /sso carrying
                           the request and every other parameter, with an Email field)
      &groups=A,B          the person's groups (a multi-valued attribute)
      &groups_attribute=N  that attribute's name (default `groups`)
      &variant=…           good (assertion and response signed, RSA-SHA256), response_only (the
                           assertion unsigned), sha1 (RSA-SHA1 and SHA-1 digests), expired
                           (NotOnOrAfter ten minutes ago)
      &audience=ENTITY     the audience (SP entity id) the assertion names, instead of the requester
It exits when its standard input closes (the test ends), so it never outlives the test.
"""

import argparse
import base64
import html
import shutil
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.assertion import Policy
from saml2.authn_context import PASSWORD
from saml2.config import IdPConfig
from saml2.metadata import entity_descriptor
from saml2.saml import NAME_FORMAT_URI, NAMEID_FORMAT_EMAILADDRESS, NameID
from saml2.server import Server
from saml2.xmldsig import DIGEST_SHA1, DIGEST_SHA256, SIG_RSA_SHA1, SIG_RSA_SHA256


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--key", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--sp-metadata", action="append", default=[])
    a = ap.parse_args()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), None)
    base = "http://127.0.0.1:%d" % httpd.server_address[1]
    xmlsec = shutil.which("xmlsec1")
    if not xmlsec:
        sys.exit("xmlsec1 is not installed (apt-get install xmlsec1)")
    conf = IdPConfig()
    conf.load(
        {
            "entityid": base + "/metadata",
            "service": {
                "idp": {
                    "endpoints": {"single_sign_on_service": [(base + "/sso", BINDING_HTTP_REDIRECT)]},
                    "want_authn_requests_signed": False,
                    "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                    "policy": {"default": {"lifetime": {"minutes": 5}, "name_form": NAME_FORMAT_URI}},
                }
            },
            "key_file": a.key,
            "cert_file": a.cert,
            "metadata": {"local": a.sp_metadata},
            "xmlsec_binary": xmlsec,
            "crypto_backend": "xmlsec1",
        }
    )
    server = Server(config=conf)
    metadata = str(entity_descriptor(conf)).encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status, body, ctype="text/html; charset=utf-8"):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            url = urlsplit(self.path)
            q = parse_qs(url.query)
            if url.path == "/favicon.ico":
                # A browser asks for it; a 404 would be a console error in the browser test.
                return self.answer(204, b"", "image/x-icon")
            if url.path == "/metadata":
                return self.answer(200, metadata, "application/samlmetadata+xml")
            if url.path == "/sso" and "SAMLRequest" not in q:
                # A bare GET, as a connection test sends: an IdP's answer to no request.
                return self.answer(400, b"no SAMLRequest")
            if url.path != "/sso":
                return self.answer(404, b"not found")
            if "user" not in q:
                hidden = "".join(
                    '<input type="hidden" name="%s" value="%s">' % (html.escape(k), html.escape(v))
                    for k, vs in q.items()
                    for v in vs
                )
                page = (
                    '<!doctype html><html lang="en"><head><title>Test IdP: sign in</title></head><body><main>'
                    "<h1>Test identity provider</h1>"
                    '<form method="get" action="/sso">%s'
                    '<label for="email">Email</label> <input id="email" name="user" type="email" required>'
                    ' <button type="submit" id="sign-in">Sign in</button></form>'
                    "</main></body></html>" % hidden
                )
                return self.answer(200, page.encode())
            try:
                req = server.parse_authn_request(q["SAMLRequest"][0], BINDING_HTTP_REDIRECT)
                args = server.response_args(req.message, [BINDING_HTTP_POST])
                user = q["user"][0]
                groups = [g for g in q.get("groups", [""])[0].split(",") if g]
                groups_attribute = q.get("groups_attribute", ["groups"])[0]
                variant = q.get("variant", ["good"])[0]
                kw = {
                    "sign_response": True,
                    "sign_assertion": True,
                    "sign_alg": SIG_RSA_SHA256,
                    "digest_alg": DIGEST_SHA256,
                }
                if variant == "response_only":
                    kw["sign_assertion"] = False
                elif variant == "sha1":
                    kw["sign_alg"], kw["digest_alg"] = SIG_RSA_SHA1, DIGEST_SHA1
                elif variant == "expired":
                    kw["release_policy"] = Policy(
                        {"default": {"lifetime": {"minutes": -10}, "name_form": NAME_FORMAT_URI}},
                        mds=server.metadata,
                    )
                elif variant != "good":
                    return self.answer(400, b"unknown variant")
                if "audience" in q:
                    args["sp_entity_id"] = q["audience"][0]
                acs = args["destination"]
                args.pop("binding", None)
                identity = {"mail": [user], "displayName": [user.split("@")[0].title()]}
                if groups:
                    identity[groups_attribute] = groups
                resp = server.create_authn_response(
                    identity,
                    userid=user,
                    name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=user),
                    authn={"class_ref": PASSWORD, "authn_auth": base},
                    **args,
                    **kw,
                )
            except Exception as e:  # the test reads the reason
                return self.answer(400, ("refused: %r" % e).encode())
            b64 = base64.b64encode(str(resp).encode()).decode()
            page = (
                "<!doctype html><html><head><title>IdP</title></head><body>"
                '<form method="post" action="%s">'
                '<input type="hidden" name="SAMLResponse" value="%s">'
                '<input type="hidden" name="RelayState" value="">'
                '<button type="submit" id="continue">Continue</button></form>'
                "<script>document.forms[0].submit()</script>"
                "</body></html>" % (html.escape(acs), b64)
            )
            self.answer(200, page.encode())

    httpd.RequestHandlerClass = Handler
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    print("PORT %d" % httpd.server_address[1], flush=True)
    sys.stdin.read()  # until the test closes it
    httpd.shutdown()


if __name__ == "__main__":
    main()
