#!/usr/bin/python3
"""A fake of the two AWS query APIs e2d's peer discovery calls, on loopback, for
node/test/discovery_test.sh: EC2's DescribeInstances (filters tag:KEY, instance-state-name;
InstanceId.N; MaxResults and NextToken paging) and Auto Scaling's DescribeAutoScalingGroups
(AutoScalingGroupNames.member.1).

Every request's AWS Signature Version 4 is checked with botocore (AWS's own Python signer),
for the service the action belongs to; a bad one gets EC2's AuthFailure or Auto Scaling's
SignatureDoesNotMatch, with HTTP 403, as AWS answers.

The instances and groups come from STATE_JSON, read at every request:
  {"instances": [{"id": "i-1", "ip": "10.0.0.1", "state": "running", "tags": {"k": "v"}}],
   "groups": {"NAME": [["i-1", "InService"], ...]}}

usage: fake_aws.py LISTEN_PORT ACCESS_KEY SECRET_KEY REGION STATE_JSON
"""

import hmac
import http.server
import json
import sys
import urllib.parse
from xml.sax.saxutils import escape

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

LISTEN, ACCESS, SECRET, REGION, STATE = (int(sys.argv[1]), sys.argv[2], sys.argv[3],
                                         sys.argv[4], sys.argv[5])
SERVICE_OF = {'DescribeInstances': 'ec2', 'DescribeAutoScalingGroups': 'autoscaling'}


def check(path, headers, service):
    """None if the request is signed right for `service`, else a message."""
    auth = headers.get('Authorization', '')
    if not auth.startswith('AWS4-HMAC-SHA256 '):
        return 'not signed with AWS4-HMAC-SHA256'
    try:
        parts = dict(p.strip().split('=', 1) for p in auth[len('AWS4-HMAC-SHA256 '):].split(','))
        access, date, region, scope_service, term = parts['Credential'].split('/')
        signed = parts['SignedHeaders'].split(';')
        provided = parts['Signature']
    except (KeyError, ValueError):
        return 'cannot parse ' + auth
    if access != ACCESS:
        return 'unknown access key ' + access
    if (region, scope_service, term) != (REGION, service, 'aws4_request'):
        return 'bad scope ' + parts['Credential']
    amz_date = headers.get('x-amz-date', '')
    if 'host' not in signed or 'x-amz-date' not in signed or not amz_date.startswith(date):
        return 'host and x-amz-date must be signed, and the scope date be the x-amz-date'
    signed_headers = {}
    for name in signed:
        if headers.get(name) is None:
            return 'signed header ' + name + ' is missing'
        signed_headers[name] = headers.get(name)
    request = AWSRequest(method='GET', url='http://' + headers['Host'] + path, data=b'',
                         headers=signed_headers)
    request.context['timestamp'] = amz_date
    signer = SigV4Auth(Credentials(ACCESS, SECRET), service, REGION)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, provided):
        return 'signature mismatch; canonical request: ' + repr(canonical)
    return None


def describe_instances(q, state):
    filters = {}
    for k, v in q.items():
        if k.startswith('Filter.') and k.endswith('.Name'):
            n = k[len('Filter.'):-len('.Name')]
            filters[v] = q.get('Filter.%s.Value.1' % n)
    ids = {v for k, v in q.items() if k.startswith('InstanceId.')}
    chosen = []
    for inst in state['instances']:
        if ids and inst['id'] not in ids:
            continue
        ok = True
        for name, value in filters.items():
            if name == 'instance-state-name':
                ok = ok and inst['state'] == value
            elif name.startswith('tag:'):
                ok = ok and inst.get('tags', {}).get(name[4:]) == value
            else:
                return 400, error_ec2('InvalidParameterValue', 'unknown filter ' + name)
        if ok:
            chosen.append(inst)
    start = int(q.get('NextToken', '0'))
    size = int(q.get('MaxResults', '1000'))
    page = chosen[start:start + size]
    items = ''.join(
        '<item><instanceId>%s</instanceId><instanceState><code>16</code><name>%s</name>'
        '</instanceState><privateIpAddress>%s</privateIpAddress><networkInterfaceSet><item>'
        '<privateIpAddress>%s</privateIpAddress></item></networkInterfaceSet></item>'
        % (escape(i['id']), escape(i['state']), escape(i['ip']), escape(i['ip']))
        for i in page)
    # One reservation per page, and a second page when MaxResults cuts the list.
    next_token = ('<nextToken>%d</nextToken>' % (start + size)
                  if start + size < len(chosen) else '')
    return 200, ('<?xml version="1.0" encoding="UTF-8"?>\n'
                 '<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
                 '<requestId>fake</requestId><reservationSet><item><instancesSet>%s'
                 '</instancesSet></item></reservationSet>%s</DescribeInstancesResponse>'
                 % (items, next_token))


def describe_groups(q, state):
    name = q.get('AutoScalingGroupNames.member.1', '')
    members = ''
    if name in state['groups']:
        members = ('<member><AutoScalingGroupName>%s</AutoScalingGroupName><Instances>%s'
                   '</Instances></member>'
                   % (escape(name), ''.join(
                       '<member><InstanceId>%s</InstanceId><LifecycleState>%s</LifecycleState>'
                       '</member>' % (escape(i), escape(s)) for i, s in state['groups'][name])))
    return 200, ('<DescribeAutoScalingGroupsResponse xmlns="http://autoscaling.amazonaws.com/'
                 'doc/2011-01-01/"><DescribeAutoScalingGroupsResult><AutoScalingGroups>%s'
                 '</AutoScalingGroups></DescribeAutoScalingGroupsResult>'
                 '</DescribeAutoScalingGroupsResponse>' % members)


def error_ec2(code, message):
    return ('<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>%s</Code>'
            '<Message>%s</Message></Error></Errors><RequestID>fake</RequestID></Response>'
            % (code, escape(message)))


def error_autoscaling(code, message):
    return ('<ErrorResponse><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message>'
            '</Error><RequestId>fake</RequestId></ErrorResponse>' % (code, escape(message)))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, fmt, *args):
        sys.stderr.write('fake_aws: ' + (fmt % args) + '\n')

    def do_GET(self):
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        action = q.get('Action', '')
        service = SERVICE_OF.get(action)
        if service is None:
            status, body = 400, error_ec2('InvalidAction', 'unknown action ' + action)
        else:
            refused = check(self.path, self.headers, service)
            if refused is not None:
                self.log_message('refused %s: %s', self.path, refused)
                status, body = 403, (error_ec2('AuthFailure', refused) if service == 'ec2'
                                     else error_autoscaling('SignatureDoesNotMatch', refused))
            else:
                with open(STATE) as f:
                    state = json.load(f)
                status, body = (describe_instances(q, state) if service == 'ec2'
                                else describe_groups(q, state))
        data = body.encode()
        self.send_response(status)
        self.send_header('Content-Type', 'text/xml;charset=UTF-8')
        self.send_header('Content-Length', str(len(data)))
        self.send_header('Connection', 'close')
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True


if __name__ == '__main__':
    server = http.server.ThreadingHTTPServer(('127.0.0.1', LISTEN), Handler)
    sys.stderr.write('fake_aws: listening on 127.0.0.1:%d\n' % LISTEN)
    server.serve_forever()
