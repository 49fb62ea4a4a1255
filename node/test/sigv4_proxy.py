#!/usr/bin/python3
"""A reverse proxy on loopback that checks each request's AWS Signature Version 4, then
forwards it to an S3-compatible server.

s3rver takes any well-formed V4 signature, so node/test/s3_test.sh puts this in front of it:
every request e2d makes is re-signed here by botocore (AWS's own Python signer, Debian's
python3-botocore) from the headers the request says it signed, and refused with S3's 403
SignatureDoesNotMatch (or InvalidAccessKeyId) if the signatures differ, or if the body does
not hash to the x-amz-content-sha256 it was signed with.

usage: sigv4_proxy.py LISTEN_PORT UPSTREAM_PORT ACCESS_KEY SECRET_KEY REGION
"""

import hashlib
import hmac
import http.client
import http.server
import sys

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

LISTEN, UPSTREAM, ACCESS, SECRET, REGION = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                                            sys.argv[4], sys.argv[5])
MAX_BODY = 256 << 20


def check(method, path, headers, body):
    """None if the request is signed right, else (S3 error code, message)."""
    auth = headers.get('Authorization', '')
    if not auth.startswith('AWS4-HMAC-SHA256 '):
        return ('AccessDenied', 'not signed with AWS4-HMAC-SHA256')
    try:
        parts = dict(p.strip().split('=', 1) for p in auth[len('AWS4-HMAC-SHA256 '):].split(','))
        access, date, region, service, term = parts['Credential'].split('/')
        signed = parts['SignedHeaders'].split(';')
        provided = parts['Signature']
    except (KeyError, ValueError):
        return ('AuthorizationHeaderMalformed', 'cannot parse ' + auth)
    if access != ACCESS:
        return ('InvalidAccessKeyId', 'unknown access key ' + access)
    if (region, service, term) != (REGION, 's3', 'aws4_request'):
        return ('AuthorizationHeaderMalformed', 'bad scope ' + parts['Credential'])
    for required in ('host', 'x-amz-date', 'x-amz-content-sha256'):
        if required not in signed:
            return ('AccessDenied', required + ' is not signed')
    amz_date = headers.get('x-amz-date', '')
    if not amz_date.startswith(date):
        return ('AuthorizationHeaderMalformed', 'the scope date is not the x-amz-date')
    if headers.get('x-amz-content-sha256') != hashlib.sha256(body).hexdigest():
        return ('XAmzContentSHA256Mismatch', 'the body does not hash to x-amz-content-sha256')
    signed_headers = {}
    for name in signed:
        if headers.get(name) is None:
            return ('AccessDenied', 'signed header ' + name + ' is missing')
        signed_headers[name] = headers.get(name)
    request = AWSRequest(method=method, url='http://' + headers['Host'] + path, data=body,
                         headers=signed_headers)
    request.context['timestamp'] = amz_date
    signer = S3SigV4Auth(Credentials(ACCESS, SECRET), 's3', REGION)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, provided):
        return ('SignatureDoesNotMatch', 'the request signature we calculated does not match '
                'the signature you provided; canonical request: ' + repr(canonical))
    return None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, fmt, *args):
        sys.stderr.write('sigv4_proxy: ' + (fmt % args) + '\n')

    def reply(self, status, headers, body):
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in ('connection', 'content-length', 'transfer-encoding'):
                self.send_header(k, v)
        self.send_header('Content-Length', str(len(body)))
        self.send_header('Connection', 'close')
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)
        self.close_connection = True

    def handle_any(self):
        length = int(self.headers.get('Content-Length') or 0)
        if length > MAX_BODY:
            self.reply(413, [], b'')
            return
        body = self.rfile.read(length) if length else b''
        refused = check(self.command, self.path, self.headers, body)
        if refused is not None:
            code, message = refused
            self.log_message('refused %s %s: %s %s', self.command, self.path, code, message)
            xml = ('<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code>'
                   '<Message>%s</Message></Error>' % (code, message.replace('&', '&amp;')
                                                      .replace('<', '&lt;')))
            self.reply(403, [('Content-Type', 'application/xml')], xml.encode())
            return
        upstream = http.client.HTTPConnection('127.0.0.1', UPSTREAM, timeout=30)
        forward = {k: v for k, v in self.headers.items() if k.lower() != 'connection'}
        upstream.request(self.command, self.path, body=body, headers=forward)
        r = upstream.getresponse()
        data = r.read()
        upstream.close()
        self.reply(r.status, r.getheaders(), data)

    do_GET = do_PUT = do_DELETE = do_HEAD = do_POST = handle_any


if __name__ == '__main__':
    server = http.server.ThreadingHTTPServer(('127.0.0.1', LISTEN), Handler)
    sys.stderr.write('sigv4_proxy: listening on 127.0.0.1:%d\n' % LISTEN)
    server.serve_forever()
