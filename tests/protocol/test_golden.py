"""Golden wire bytes for every API, and the codec fed three ways.

The golden frames were produced by this codec when the protocol was written
and checked by hand against docs/protocol.md (frame header: length,
api_key, api_version, correlation_id 7; then the msgpack map with the fields
in schema order; Produce requests and Fetch responses end with the raw batch).
A change to the wire format fails here first.
"""

from __future__ import annotations

import struct

import pytest
from protocol_samples import BATCH, REPLICA_FETCH, SAMPLES

from tailrace.client.errors import ClusterAuthorizationError, ErrorCode, LocalProtocolError
from tailrace.client.protocol import (
    CLOSED,
    NEED_DATA,
    ApiKey,
    ClientConnection,
    Request,
    Response,
    ServerConnection,
    encode_request,
    encode_response,
)

GOLDEN: dict[ApiKey, tuple[bytes, bytes]] = {
    ApiKey.PRODUCE: (
        bytes.fromhex(
            "0000009c000000000000000783a461636b7301aa74696d656f75745f6d73cd03e8a6746f70696373"
            "9182a46e616d65a174aa706172746974696f6e739182a9706172746974696f6e00ae7265636f7264"
            "735f6c656e6774684700000000000000000000003bffffffff01a3d5774e0000000000000000018b"
            "cfe568000000018bcfe56800ffffffffffffffffffffffffffff00000001919400c4016bc40176c0"
        ),
        bytes.fromhex(
            "000000a5000000000000000783aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
            "a6746f706963739182a46e616d65a174aa706172746974696f6e739187a9706172746974696f6e00"
            "aa6572726f725f636f646500ad6572726f725f6d657373616765c0ab626173655f6f66667365742a"
            "b26c6f675f617070656e645f74696d655f6d7305b06c6f675f73746172745f6f666673657400a964"
            "75706c6963617465c2"
        ),
    ),
    ApiKey.FETCH: (
        bytes.fromhex(
            "00000075000100000000000784ab6d61785f776169745f6d7364a96d696e5f627974657301a96d61"
            "785f6279746573ce00100000a6746f706963739182a46e616d65a174aa706172746974696f6e7391"
            "83a9706172746974696f6e00ac66657463685f6f666673657407a96d61785f6279746573ce001000"
            "00"
        ),
        bytes.fromhex(
            "0000013e000100000000000783aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
            "a6746f706963739182a46e616d65a174aa706172746974696f6e739286a9706172746974696f6e00"
            "aa6572726f725f636f646500ad6572726f725f6d657373616765c0ae686967685f77617465726d61"
            "726b09b06c6f675f73746172745f6f666673657400ae7265636f7264735f6c656e6774684786a970"
            "6172746974696f6e01aa6572726f725f636f646501ad6572726f725f6d657373616765a572616e67"
            "65ae686967685f77617465726d61726bffb06c6f675f73746172745f6f6666736574ffae7265636f"
            "7264735f6c656e6774680000000000000000000000003bffffffff01a3d5774e0000000000000000"
            "018bcfe568000000018bcfe56800ffffffffffffffffffffffffffff00000001919400c4016bc401"
            "76c0"
        ),
    ),
    ApiKey.LIST_OFFSETS: (
        bytes.fromhex(
            "0000003c000200000000000781a6746f706963739182a46e616d65a174aa706172746974696f6e73"
            "9182a9706172746974696f6e00a974696d657374616d70fe"
        ),
        bytes.fromhex(
            "0000007a000200000000000783aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
            "a6746f706963739182a46e616d65a174aa706172746974696f6e739185a9706172746974696f6e00"
            "aa6572726f725f636f646500ad6572726f725f6d657373616765c0a66f666673657403a974696d65"
            "7374616d70ff"
        ),
    ),
    ApiKey.METADATA: (
        bytes.fromhex(
            "0000002e000300000000000782a6746f7069637391a174b9616c6c6f775f6175746f5f746f706963"
            "5f6372656174696f6ec2"
        ),
        bytes.fromhex(
            "0000018b000300000000000786aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
            "aa636c75737465725f6964a26331ad636f6e74726f6c6c65725f696400a762726f6b6572739183a7"
            "6e6f64655f696400a4686f7374a93132372e302e302e31a4706f7274cd1cfca6746f706963739185"
            "a46e616d65a174aa6572726f725f636f646500ad6572726f725f6d657373616765c0a8696e746572"
            "6e616cc2aa706172746974696f6e7391de0010a9706172746974696f6e00aa6572726f725f636f64"
            "6500ad6572726f725f6d657373616765c0a96c65616465725f696400ac6c65616465725f65706f63"
            "68ffa87265706c6963617390a369737290b06f66666c696e655f7265706c6963617390b06c6f675f"
            "73746172745f6f666673657400ae686967685f77617465726d61726b0aae6c6f675f656e645f6f66"
            "667365740aaa73697a655f6279746573cd03e8ad7365676d656e745f636f756e7401ab6469727479"
            "5f627974657300af636c65616e61626c655f627974657300ad6c6173745f636c65616e5f6d73ff"
        ),
    ),
    ApiKey.API_VERSIONS: (
        bytes.fromhex(
            "0000003a001200000000000782ab636c69656e745f6e616d65af7461696c726163652d707974686f"
            "6eae636c69656e745f76657273696f6ea5302e312e30"
        ),
        bytes.fromhex(
            "0000006b001200000000000784aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
            "ac6170695f76657273696f6e739183a76170695f6b657900ab6d696e5f76657273696f6e00ab6d61"
            "785f76657273696f6e00ae62726f6b65725f76657273696f6ea5302e312e30"
        ),
    ),
    ApiKey.CREATE_TOPICS: (
        bytes.fromhex(
            "0000006a001300000000000783a6746f706963739184a46e616d65a174aa706172746974696f6e73"
            "03a7636f6e6669677381a5666c757368a46e6f6e65b27265706c69636174696f6e5f666163746f72"
            "ffaa74696d656f75745f6d73cd7530ad76616c69646174655f6f6e6c79c2"
        ),
        bytes.fromhex(
            "0000005b001300000000000783aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
            "a6746f706963739184a46e616d65a174aa6572726f725f636f646500ad6572726f725f6d65737361"
            "6765c0aa706172746974696f6e7303"
        ),
    ),
    ApiKey.DELETE_TOPICS: (
        bytes.fromhex("00000021001400000000000782a6746f7069637391a174aa74696d656f75745f6d73cd7530"),
        bytes.fromhex(
            "00000051001400000000000783aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
            "a6746f706963739183a46e616d65a174aa6572726f725f636f646503ad6572726f725f6d65737361"
            "6765a26e6f"
        ),
    ),
    ApiKey.CREATE_PARTITIONS: (
        bytes.fromhex(
            "0000003d002500000000000783a6746f706963739182a46e616d65a174a5636f756e7406aa74696d"
            "656f75745f6d73cd7530ad76616c69646174655f6f6e6c79c2"
        ),
        bytes.fromhex(
            "00000051002500000000000783aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
            "a6746f706963739183a46e616d65a174aa6572726f725f636f646525ad6572726f725f6d65737361"
            "6765a26e6f"
        ),
    ),
    ApiKey.INIT_PRODUCER_ID: (
        bytes.fromhex(
            "00000026001600000000000782ab70726f64756365725f6964ffae70726f64756365725f65706f6368ff"
        ),
        bytes.fromhex(
            "00000043001600000000000784aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
            "ab70726f64756365725f6964cd03e8ae70726f64756365725f65706f636800"
        ),
    ),
    ApiKey.OFFSET_FOR_LEADER_EPOCH: (
        bytes.fromhex(
            "00000061001700000000000782aa7265706c6963615f696402a6746f706963739182a46e616d65a1"
            "74aa706172746974696f6e739183a9706172746974696f6e00b463757272656e745f6c6561646572"
            "5f65706f636805ac6c65616465725f65706f636803"
        ),
        bytes.fromhex(
            "000000c8001700000000000783aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
            "a6746f706963739182a46e616d65a174aa706172746974696f6e739285a9706172746974696f6e00"
            "aa6572726f725f636f646500ad6572726f725f6d657373616765c0ac6c65616465725f65706f6368"
            "03aa656e645f6f6666736574cc8c85a9706172746974696f6e01aa6572726f725f636f64654aad65"
            "72726f725f6d657373616765a57374616c65ac6c65616465725f65706f6368ffaa656e645f6f6666"
            "736574ff"
        ),
    ),
    ApiKey.DESCRIBE_CONFIGS: (
        bytes.fromhex(
            "0000003c002000000000000781a97265736f75726365739183ad7265736f757263655f74797065a5"
            "746f706963a46e616d65a174a46b65797391a5666c757368"
        ),
        bytes.fromhex(
            "000000a5002000000000000783aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
            "a97265736f75726365739185ad7265736f757263655f74797065a5746f706963a46e616d65a174aa"
            "6572726f725f636f646500ad6572726f725f6d657373616765c0a7636f6e666967739185a46e616d"
            "65a5666c757368a576616c7565a473796e63a6736f75726365a764656661756c74a9726561645f6f"
            "6e6c79c2a3646f63a0"
        ),
    ),
    ApiKey.ALTER_CONFIGS: (
        bytes.fromhex(
            "00000061002100000000000782a97265736f75726365739183ad7265736f757263655f74797065a5"
            "746f706963a46e616d65a174a7636f6e6669677382ac726574656e74696f6e5f6d73a431303030a5"
            "666c757368c0ad76616c69646174655f6f6e6c79c2"
        ),
        bytes.fromhex(
            "00000066002100000000000783aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
            "a97265736f75726365739184ad7265736f757263655f74797065a5746f706963a46e616d65a174aa"
            "6572726f725f636f646500ad6572726f725f6d657373616765c0"
        ),
    ),
    ApiKey.OFFSET_COMMIT: (
        bytes.fromhex(
            "0000006a000800000000000784a867726f75705f6964a167a96d656d6265725f6964a26d31ac6d65"
            "6d6265725f65706f636803a6746f706963739182a46e616d65a174aa706172746974696f6e739183"
            "a9706172746974696f6e00a66f66667365742aa86d65746164617461a178"
        ),
        bytes.fromhex(
            "0000009c000800000000000783aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
            "a6746f706963739182a46e616d65a174aa706172746974696f6e739283a9706172746974696f6e00"
            "aa6572726f725f636f646500ad6572726f725f6d657373616765c083a9706172746974696f6e01aa"
            "6572726f725f636f6465cd03e9ad6572726f725f6d657373616765ac6e6f742061737369676e6564"
        ),
    ),
    ApiKey.OFFSET_FETCH: (
        bytes.fromhex(
            "00000031000900000000000782a867726f75705f6964a167a6746f706963739182a46e616d65a174"
            "aa706172746974696f6e739100"
        ),
        bytes.fromhex(
            "00000091000900000000000783aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
            "a6746f706963739182a46e616d65a174aa706172746974696f6e739186a9706172746974696f6e00"
            "a66f66667365742aa86d65746164617461a178b3636f6d6d69745f74696d657374616d705f6d73cd"
            "03e8aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
        ),
    ),
    ApiKey.DESCRIBE_GROUPS: (
        bytes.fromhex("00000016000f00000000000781a967726f75705f69647391a167"),
        bytes.fromhex(
            "0000017e000f00000000000783aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
            "a667726f7570739187a867726f75705f6964a167aa6572726f725f636f646500ad6572726f725f6d"
            "657373616765c0a57374617465a6537461626c65ab67726f75705f65706f636802b061737369676e"
            "6d656e745f65706f636802a76d656d62657273918ba96d656d6265725f6964a26d31ab696e737461"
            "6e63655f6964c0a9636c69656e745f6964a163ab636c69656e745f686f7374ae3132372e302e302e"
            "313a35303030ac6d656d6265725f65706f636802b1737562736372696265645f746f7069637391a1"
            "74aa61737369676e6d656e749182a5746f706963a174aa706172746974696f6e73920001b270656e"
            "64696e675f7265766f636174696f6e90b17461726765745f61737369676e6d656e749182a5746f70"
            "6963a174aa706172746974696f6e73920001b273657373696f6e5f74696d656f75745f6d73cdafc8"
            "b4726562616c616e63655f74696d656f75745f6d73ce000493e0"
        ),
    ),
    ApiKey.LIST_GROUPS: (
        bytes.fromhex("0000001f001000000000000781ad7374617465735f66696c74657291a6737461626c65"),
        bytes.fromhex(
            "00000060001000000000000783aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
            "a667726f7570739184a867726f75705f6964a167a57374617465a6537461626c65ac6d656d626572"
            "5f636f756e7401ab67726f75705f65706f636802"
        ),
    ),
    ApiKey.DELETE_GROUPS: (
        bytes.fromhex("00000016002a00000000000781a967726f75705f69647391a167"),
        bytes.fromhex(
            "0000005b002a00000000000783aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
            "a7726573756c74739183a867726f75705f6964a167aa6572726f725f636f646544ad6572726f725f"
            "6d657373616765a76d656d62657273"
        ),
    ),
    ApiKey.CONSUMER_GROUP_HEARTBEAT: (
        bytes.fromhex(
            "000000c300440000000000078aa867726f75705f6964a167a96d656d6265725f6964a26d31ac6d65"
            "6d6265725f65706f636802ab696e7374616e63655f6964c0b1737562736372696265645f746f7069"
            "637391a174b06f776e65645f706172746974696f6e739182a5746f706963a174aa70617274697469"
            "6f6e739100b273657373696f6e5f74696d656f75745f6d73cd2710b4726562616c616e63655f7469"
            "6d656f75745f6d73ce000493e0ab6d61785f776169745f6d73cd0bb8a9636c69656e745f6964a0"
        ),
        bytes.fromhex(
            "0000007b004400000000000786aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
            "a96d656d6265725f6964a26d31ac6d656d6265725f65706f636803b56865617274626561745f696e"
            "74657276616c5f6d73cd0bb8aa61737369676e6d656e749182a5746f706963a174aa706172746974"
            "696f6e73920001"
        ),
    ),
    ApiKey.SASL_HANDSHAKE: (
        bytes.fromhex("00000021001100000000000781a96d656368616e69736dad534352414d2d5348412d323536"),
        bytes.fromhex(
            "00000044001100000000000783aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
            "aa6d656368616e69736d7392ad534352414d2d5348412d323536a5504c41494e"
        ),
    ),
    ApiKey.SASL_AUTHENTICATE: (
        bytes.fromhex(
            "00000022002400000000000781aa617574685f6279746573c40c6e2c2c6e3d752c723d616263"
        ),
        bytes.fromhex(
            "00000060002400000000000784aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
            "aa617574685f6279746573c41a723d6162636465662c733d6332467364413d3d2c693d34303936b3"
            "73657373696f6e5f6c69666574696d655f6d7300"
        ),
    ),
    ApiKey.DESCRIBE_ACLS: (
        bytes.fromhex(
            "00000059001d00000000000781a666696c74657285a97072696e636970616ca6557365723a61a96f"
            "7065726174696f6ec0ad7265736f757263655f74797065c0ad7265736f757263655f6e616d65c0ac"
            "7061747465726e5f74797065c0"
        ),
        bytes.fromhex(
            "00000088001d00000000000783aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
            "a862696e64696e67739185a97072696e636970616ca6557365723a61a96f7065726174696f6ea472"
            "656164ad7265736f757263655f74797065a5746f706963ad7265736f757263655f6e616d65a174ac"
            "7061747465726e5f74797065a76c69746572616c"
        ),
    ),
    ApiKey.CREATE_ACLS: (
        bytes.fromhex(
            "0000006c001e00000000000781a96372656174696f6e739185a97072696e636970616ca12aa96f70"
            "65726174696f6ea57772697465ad7265736f757263655f74797065a5746f706963ad7265736f7572"
            "63655f6e616d65a2742dac7061747465726e5f74797065a87072656669786564"
        ),
        bytes.fromhex(
            "00000049001e00000000000783aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
            "a7726573756c74739182aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
        ),
    ),
    ApiKey.DELETE_ACLS: (
        bytes.fromhex(
            "0000005a001f00000000000781a766696c746572739185a97072696e636970616cc0a96f70657261"
            "74696f6ec0ad7265736f757263655f74797065a567726f7570ad7265736f757263655f6e616d65c0"
            "ac7061747465726e5f74797065c0"
        ),
        bytes.fromhex(
            "000000ac001f00000000000783aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
            "a7726573756c74739183aa6572726f725f636f646500ad6572726f725f6d657373616765c0a76465"
            "6c657465649185a97072696e636970616ca6557365723a61a96f7065726174696f6ea472656164ad"
            "7265736f757263655f74797065a567726f7570ad7265736f757263655f6e616d65a167ac70617474"
            "65726e5f74797065a76c69746572616c"
        ),
    ),
}

#: Fetch version 1 (a follower's fetch), REPLICA_FETCH's bytes
REPLICA_FETCH_GOLDEN = (
    bytes.fromhex(
        "0000008e000100010000000784aa7265706c6963615f696402ab6d61785f776169745f6d73cd01f4"
        "a96d61785f6279746573ce00a00000a6746f706963739182a46e616d65a174aa706172746974696f"
        "6e739184a9706172746974696f6e00b463757272656e745f6c65616465725f65706f636805ac6665"
        "7463685f6f666673657407a96d61785f6279746573ce00100000"
    ),
    bytes.fromhex(
        "0000015e000100010000000783aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
        "a6746f706963739182a46e616d65a174aa706172746974696f6e739287a9706172746974696f6e00"
        "aa6572726f725f636f646500ad6572726f725f6d657373616765c0ae686967685f77617465726d61"
        "726b07b06c6f675f73746172745f6f666673657400ae6c6f675f656e645f6f666673657409ae7265"
        "636f7264735f6c656e6774684787a9706172746974696f6e01aa6572726f725f636f646506ad6572"
        "726f725f6d657373616765a56d6f766564ae686967685f77617465726d61726bffb06c6f675f7374"
        "6172745f6f6666736574ffae6c6f675f656e645f6f6666736574ffae7265636f7264735f6c656e67"
        "74680000000000000000000000003bffffffff01a3d5774e0000000000000000018bcfe568000000"
        "018bcfe56800ffffffffffffffffffffffffffff00000001919400c4016bc40176c0"
    ),
)

APIS = list(SAMPLES)


def _join(prefix, parts):
    return prefix + b"".join(bytes(p) for p in parts)


def _normalise(msg):
    """Records decode as memoryviews; compare them as bytes."""
    import dataclasses

    if dataclasses.is_dataclass(msg):
        return {f.name: _normalise(getattr(msg, f.name)) for f in dataclasses.fields(msg)} | {
            "__type__": type(msg).__name__
        }
    if isinstance(msg, list):
        return [_normalise(x) for x in msg]
    if isinstance(msg, dict):
        return {k: _normalise(v) for k, v in msg.items()}
    if isinstance(msg, memoryview):
        return bytes(msg)
    return msg


@pytest.mark.parametrize("api", APIS, ids=lambda a: a.name)
def test_request_golden_bytes(api):
    request, _ = SAMPLES[api]
    key, prefix, buffers = encode_request(request, 7)
    assert key == api
    assert _join(prefix, buffers) == GOLDEN[api][0]


@pytest.mark.parametrize("api", APIS, ids=lambda a: a.name)
def test_response_golden_bytes(api):
    _, response = SAMPLES[api]
    prefix, parts = encode_response(api, 0, 7, response)
    assert _join(prefix, parts) == GOLDEN[api][1]


def test_frame_header_layout():
    frame = GOLDEN[ApiKey.METADATA][0]
    length, api_key, api_version, correlation_id = struct.unpack_from(">IHHI", frame)
    assert length == len(frame) - 4
    assert (api_key, api_version, correlation_id) == (3, 0, 7)


def test_produce_request_ends_with_the_raw_batch():
    assert GOLDEN[ApiKey.PRODUCE][0].endswith(BATCH)


def _feed_server(chunks):
    server = ServerConnection()
    events = []
    for chunk in chunks:
        server.receive_data(chunk)
        while (event := server.next_event()) is not NEED_DATA:
            events.append(event)
    return server, events


def _split(data, how):
    if how == "whole":
        return [data]
    if how == "bytewise":
        return [data[i : i + 1] for i in range(len(data))]
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["whole", "bytewise"])
@pytest.mark.parametrize("api", APIS, ids=lambda a: a.name)
def test_server_decodes_request(api, how):
    request, _ = SAMPLES[api]
    _, events = _feed_server(_split(GOLDEN[api][0], how))
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, Request)
    assert (event.api_key, event.api_version, event.correlation_id) == (api, 0, 7)
    assert _normalise(event.body) == _normalise(request)


@pytest.mark.parametrize("api", APIS, ids=lambda a: a.name)
def test_server_with_trailing_bytes_waits_for_the_rest(api):
    request, _ = SAMPLES[api]
    data = GOLDEN[api][0]
    server, events = _feed_server([data + data[:5]])
    assert len(events) == 1
    assert _normalise(events[0].body) == _normalise(request)
    assert server.next_event() is NEED_DATA
    server.receive_data(data[5:])
    second = server.next_event()
    assert _normalise(second.body) == _normalise(request)
    server.receive_data(b"")
    assert server.next_event() is CLOSED


def _client_with_request(api):
    client = ClientConnection()
    for _ in range(7):  # advance correlation ids to 7 with throwaway requests
        client.send_request(SAMPLES[ApiKey.METADATA][0])
    client.abandon_pending()
    correlation_id, _, _ = client.send_request(SAMPLES[api][0])
    assert correlation_id == 7
    return client


@pytest.mark.parametrize("how", ["whole", "bytewise", "trailing"])
@pytest.mark.parametrize("api", APIS, ids=lambda a: a.name)
def test_client_decodes_response(api, how):
    _, response = SAMPLES[api]
    client = _client_with_request(api)
    data = GOLDEN[api][1]
    chunks = _split(data, "whole" if how == "trailing" else how)
    if how == "trailing":
        chunks = [data + b"\x00\x00"]
    events = []
    for chunk in chunks:
        client.receive_data(chunk)
        while (event := client.next_event()) is not NEED_DATA:
            events.append(event)
    assert len(events) == 1
    assert isinstance(events[0], Response)
    assert events[0].correlation_id == 7
    assert _normalise(events[0].body) == _normalise(response)
    assert client.in_flight == 0


# --- Fetch version 1: a message pair of its own ---------------------------


def test_replica_fetch_golden_bytes():
    request, response = REPLICA_FETCH
    key, prefix, buffers = encode_request(request, 7, 1)
    assert key == ApiKey.FETCH
    assert _join(prefix, buffers) == REPLICA_FETCH_GOLDEN[0]
    prefix, parts = encode_response(ApiKey.FETCH, 1, 7, response)
    assert _join(prefix, parts) == REPLICA_FETCH_GOLDEN[1]
    assert REPLICA_FETCH_GOLDEN[1].endswith(BATCH)


def test_fetch_messages_are_tied_to_their_version():
    with pytest.raises(LocalProtocolError, match="not FETCH version 0"):
        encode_request(REPLICA_FETCH[0], 7, 0)
    with pytest.raises(LocalProtocolError, match="not FETCH version 1"):
        encode_request(SAMPLES[ApiKey.FETCH][0], 7, 1)
    with pytest.raises(LocalProtocolError, match="version 0"):
        encode_response(ApiKey.FETCH, 0, 7, REPLICA_FETCH[1])


@pytest.mark.parametrize("how", ["whole", "bytewise"])
def test_server_decodes_a_replica_fetch_by_its_version(how):
    _, events = _feed_server(_split(REPLICA_FETCH_GOLDEN[0], how))
    [event] = events
    assert isinstance(event, Request)
    assert (event.api_key, event.api_version) == (ApiKey.FETCH, 1)
    assert _normalise(event.body) == _normalise(REPLICA_FETCH[0])


def test_client_decodes_a_replica_fetch_response_by_its_version():
    client = ClientConnection()
    for _ in range(7):
        client.send_request(SAMPLES[ApiKey.METADATA][0])
    client.abandon_pending()
    client.send_request(REPLICA_FETCH[0], 1)
    client.receive_data(REPLICA_FETCH_GOLDEN[1])
    event = client.next_event()
    assert isinstance(event, Response)
    assert _normalise(event.body) == _normalise(REPLICA_FETCH[1])


def test_an_error_answer_to_a_replica_fetch_is_its_own_response():
    server = ServerConnection()
    server.receive_data(REPLICA_FETCH_GOLDEN[0])
    request = server.next_event()
    data = server.error_response(request, ClusterAuthorizationError("no"))
    client = ClientConnection()
    for _ in range(7):
        client.send_request(SAMPLES[ApiKey.METADATA][0])
    client.abandon_pending()
    client.send_request(REPLICA_FETCH[0], 1)
    client.receive_data(data)
    body = client.next_event().body
    assert type(body).__name__ == "ReplicaFetchResponse"
    assert body.error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED


#: A Metadata response from a broker before the cluster fields (leader_epoch,
#: replicas, isr, offline_replicas) were added to PartitionMetadata.
_METADATA_BEFORE_CLUSTER = bytes.fromhex(
    "0000015a000300000000000786aa6572726f725f636f646500ad6572726f725f6d657373616765c0"
    "aa636c75737465725f6964a26331ad636f6e74726f6c6c65725f696400a762726f6b6572739183a7"
    "6e6f64655f696400a4686f7374a93132372e302e302e31a4706f7274cd1cfca6746f706963739185"
    "a46e616d65a174aa6572726f725f636f646500ad6572726f725f6d657373616765c0a8696e746572"
    "6e616cc2aa706172746974696f6e73918ca9706172746974696f6e00aa6572726f725f636f646500"
    "ad6572726f725f6d657373616765c0a96c65616465725f696400b06c6f675f73746172745f6f6666"
    "73657400ae686967685f77617465726d61726b0aae6c6f675f656e645f6f66667365740aaa73697a"
    "655f6279746573cd03e8ad7365676d656e745f636f756e7401ab64697274795f627974657300af63"
    "6c65616e61626c655f627974657300ad6c6173745f636c65616e5f6d73ff"
)


def test_a_metadata_response_without_the_cluster_fields_decodes_with_their_defaults():
    client = _client_with_request(ApiKey.METADATA)
    client.receive_data(_METADATA_BEFORE_CLUSTER)
    event = client.next_event()
    assert isinstance(event, Response)
    p = event.body.topics[0].partitions[0]
    assert (p.leader_id, p.leader_epoch, p.replicas, p.isr, p.offline_replicas) == (
        0,
        -1,
        [],
        [],
        [],
    )
