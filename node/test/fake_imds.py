#!/usr/bin/python3
"""A fake EC2 instance metadata service (IMDSv2 only) on loopback, for node/test/s3_test.sh.

PUT /latest/api/token (with X-aws-ec2-metadata-token-ttl-seconds) gives a session token; every
GET must carry it in X-aws-ec2-metadata-token (else 401, as IMDSv2 does). The instance profile
has one role, e2d-node, whose credentials are the ones given, expiring in an hour. Each request
is logged on stdout.

usage: fake_imds.py PORT ACCESS_KEY SECRET_KEY SESSION_TOKEN
"""

import datetime
import http.server
import json
import sys

PORT, ACCESS, SECRET, SESSION = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
TOKEN = 'imds-session-token'
ROLES = '/latest/meta-data/iam/security-credentials/'


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def reply(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        print(self.command, self.path, status, flush=True)

    def do_PUT(self):
        if self.path != '/latest/api/token':
            return self.reply(404, '')
        if not self.headers.get('X-aws-ec2-metadata-token-ttl-seconds'):
            return self.reply(400, 'missing ttl')
        return self.reply(200, TOKEN)

    def do_GET(self):
        if self.headers.get('X-aws-ec2-metadata-token') != TOKEN:
            return self.reply(401, '')
        if self.path == ROLES:
            return self.reply(200, 'e2d-node')
        if self.path == ROLES + 'e2d-node':
            expires = datetime.datetime.utcnow() + datetime.timedelta(hours=1)
            return self.reply(200, json.dumps({
                'Code': 'Success', 'Type': 'AWS-HMAC', 'AccessKeyId': ACCESS,
                'SecretAccessKey': SECRET, 'Token': SESSION,
                'LastUpdated': datetime.datetime.utcnow().strftime('%Y-%m-%dT%H:%M:%SZ'),
                'Expiration': expires.strftime('%Y-%m-%dT%H:%M:%SZ')}))
        return self.reply(404, '')

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(('127.0.0.1', PORT), Handler)
print('listening', flush=True)
server.serve_forever()
