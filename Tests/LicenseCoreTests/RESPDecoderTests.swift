import BackendTestSupport
@testable import LicenseRedis
import NIOCore
import NIOEmbedded
import Testing

/// The RESP decoder against replies captured from a real `redis-server` (RESP2 and RESP3), each
/// fed whole, byte by byte and split at every point; and against broken, hostile and random input.
@Suite("RESP decoder", .timeLimit(.minutes(2)))
struct RESPDecoderTests {
    /// Decodes `bytes` fed as the given chunks; every chunk boundary before the end must leave the
    /// reply incomplete (nil, nothing consumed) and the last one must complete it exactly.
    func decode(_ bytes: [UInt8], splits: [Int], limits: RESPDecoder.Limits = RESPDecoder.Limits()) throws -> RESPValue? {
        var decoder = RESPDecoder(limits: limits)
        var buffer = ByteBufferAllocator().buffer(capacity: bytes.count)
        var start = 0
        for end in splits + [bytes.count] where end >= start {
            buffer.writeBytes(bytes[start..<end])
            start = end
            let before = buffer.readerIndex
            if let value = try decoder.decode(buffer: &buffer) {
                #expect(end == bytes.count, "a reply completed after \(end) of \(bytes.count) bytes")
                #expect(buffer.readableBytes == 0, "a reply left \(buffer.readableBytes) bytes unread")
                return value
            }
            #expect(buffer.readerIndex == before, "an incomplete reply moved the reader index")
        }
        return nil
    }

    /// Whole, byte by byte, and split in two at every point (every 4,099th point for big replies).
    func expectDecodes(_ bytes: [UInt8], as expected: RESPValue? = nil, _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let whole = try decode(bytes, splits: [])
        #expect(whole != nil, "the whole reply did not decode \(comment?.description ?? "")", sourceLocation: sourceLocation)
        if let expected { #expect(whole == expected, comment, sourceLocation: sourceLocation) }
        let small = bytes.count <= 16_384
        if small {
            #expect(try decode(bytes, splits: Array(1..<max(1, bytes.count))) == whole, "byte by byte", sourceLocation: sourceLocation)
        }
        let step = small ? 1 : 4_099
        for split in stride(from: 0, through: bytes.count, by: step) {
            let parts = try decode(bytes, splits: [split])
            #expect(parts == whole, "split at \(split) of \(bytes.count)", sourceLocation: sourceLocation)
            if parts != whole { break }
        }
    }

    func expectRefused(_ text: String, limits: RESPDecoder.Limits = RESPDecoder.Limits(), sourceLocation: SourceLocation = #_sourceLocation) {
        var decoder = RESPDecoder(limits: limits)
        var buffer = ByteBuffer(string: text)
        #expect(sourceLocation: sourceLocation) {
            _ = try decoder.decode(buffer: &buffer)
        } throws: { error in
            (error as? RedisClientError)?.code == .protocolError
        }
    }

    // MARK: - Captured from a real redis-server

    @Test func resp2RepliesCapturedFromRedis() async throws {
        let server = try await RedisTestServer.start()
        defer { server.stop() }
        let redis = try RawRedisCapture(port: server.port)
        let bulk = String(repeating: "0123456789abcdef", count: 65_536)  // 1 MiB
        try expectDecodes(try redis.capture(["SET", "k", "v"]), as: .simpleString("OK"))
        try expectDecodes(try redis.capture(["GET", "k"]), as: .bulkString(Array("v".utf8)))
        try expectDecodes(try redis.capture(["SET", "empty", ""]), as: .simpleString("OK"))
        try expectDecodes(try redis.capture(["GET", "empty"]), as: .bulkString([]))
        try expectDecodes(try redis.capture(["GET", "missing"]), as: .null)
        try expectDecodes(try redis.capture(["INCRBY", "n", "-9223372036854775807"]), as: .integer(-9_223_372_036_854_775_807))
        try expectDecodes(try redis.capture(["NO-SUCH-COMMAND"]))
        guard case .error(let message) = try decode(try redis.capture(["NO-SUCH-COMMAND"]), splits: []) else {
            Issue.record("an unknown command should answer an error")
            return
        }
        #expect(message.hasPrefix("ERR unknown command"))
        try expectDecodes(try redis.capture(["LRANGE", "missing", "0", "-1"]), as: .array([]))
        // RESP2's null array: BLPOP that times out.
        try expectDecodes(try redis.capture(["BLPOP", "missing", "0.01"]), as: .null)
        try expectDecodes(try redis.capture(["EVAL", "return {1, {2, {'a', {3, false}}}, 'x', redis.status_reply('S'), redis.error_reply('E bad')}", "0"]),
                          as: .array([.integer(1), .array([.integer(2), .array([.bulkString(Array("a".utf8)), .array([.integer(3), .null])])]),
                                      .bulkString(Array("x".utf8)), .simpleString("S"), .error("E bad")]))
        try expectDecodes(try redis.capture(["SET", "big", bulk]), as: .simpleString("OK"))
        try expectDecodes(try redis.capture(["GET", "big"]), as: .bulkString(Array(bulk.utf8)))
        let info = try redis.capture(["INFO"])
        try expectDecodes(info)
        #expect(try decode(info, splits: [])?.string?.contains("redis_version:") == true)
        try expectDecodes(try redis.capture(["SCRIPT", "EXISTS", RedisSeatStore.scriptSHA, "0000000000000000000000000000000000000000"]))
    }

    @Test func theSeatScriptsRepliesCapturedFromRedis() async throws {
        let server = try await RedisTestServer.start()
        defer { server.stop() }
        let redis = try RawRedisCapture(port: server.port)
        try expectDecodes(try redis.capture(["SCRIPT", "LOAD", RedisSeatStore.script]), as: .bulkString(Array(RedisSeatStore.scriptSHA.utf8)))
        let keys = ["{lic}:handles", "{lic}:holders:2", "{lic}:index:2", "{lic}:seeded:2", "{lic}:machines", "{lic}:pending"]
        func seat(_ arguments: String...) throws -> [UInt8] {
            try redis.capture(["EVALSHA", RedisSeatStore.scriptSHA, "6"] + keys + arguments)
        }
        try expectDecodes(try seat("claim", "1000", "", "run-a", "s1", "u1", "hw1", "k1", "2", "360000", "7000"), as: .array([.bulkString(Array("SEED".utf8))]))
        try expectDecodes(try seat("seed", "1000", "", "run-a", "2"), as: .integer(0))
        try expectDecodes(try seat("claim", "1000", "2000", "run-a", "s1", "u1", "hw1", "k1", "1", "360000", "7000"),
                          as: .array([.bulkString(Array("GRANTED".utf8)), .bulkString(Array("s1".utf8)), .integer(361_000)]))
        try expectDecodes(try seat("claim", "1000", "2000", "run-a", "s2", "u2", "hw2", "k2", "1", "360000", ""),
                          as: .array([.bulkString(Array("FULL".utf8)), .bulkString([]), .integer(1)]))
        try expectDecodes(try seat("leases", "1000", "", "run-a"), as: .array([.bulkString(Array("s1".utf8)), .bulkString(Array("8000".utf8)), .integer(1)]))
        try expectDecodes(try seat("confirm", "3000", "2000", "run-a", "360000", "s1"), as: .array([.bulkString(Array("LATE".utf8)), .bulkString([]), .integer(3000)]))
        try expectDecodes(try seat("confirm", "1500", "2000", "run-a", "360000", "s1", "gone"),
                          as: .array([.bulkString(Array("s1".utf8)), .integer(361_500), .bulkString(Array("gone".utf8)), .integer(0)]))
        // Another server's run id: the license must be rebuilt there first.
        try expectDecodes(try seat("claim", "1500", "2000", "run-b", "s3", "u3", "hw3", "", "2", "360000", ""), as: .array([.bulkString(Array("SEED".utf8))]))
        try expectDecodes(try seat("no-such-operation", "1000", "", "run-a"))
    }

    @Test func resp3RepliesCapturedFromRedis() async throws {
        let server = try await RedisTestServer.start()
        defer { server.stop() }
        let redis = try RawRedisCapture(port: server.port)
        let hello = try redis.capture(["HELLO", "3"])
        try expectDecodes(hello)
        guard case .map(let entries) = try decode(hello, splits: []) else {
            Issue.record("HELLO 3 should answer a map")
            return
        }
        #expect(entries.contains { $0.key == .bulkString(Array("proto".utf8)) && $0.value == .integer(3) })
        try expectDecodes(try redis.capture(["GET", "missing"]), as: .null)
        try expectDecodes(try redis.capture(["ZADD", "z", "1.5", "m"]), as: .integer(1))
        try expectDecodes(try redis.capture(["ZSCORE", "z", "m"]), as: .double(1.5))
        try expectDecodes(try redis.capture(["SADD", "s", "a"]), as: .integer(1))
        try expectDecodes(try redis.capture(["SMEMBERS", "s"]), as: .set([.bulkString(Array("a".utf8))]))
        try expectDecodes(try redis.capture(["HSET", "h", "f", "v"]), as: .integer(1))
        try expectDecodes(try redis.capture(["HGETALL", "h"]), as: .map([RESPMapEntry(key: .bulkString(Array("f".utf8)), value: .bulkString(Array("v".utf8)))]))
        // Every RESP3 type, as Redis's own DEBUG PROTOCOL writes it.
        try expectDecodes(try redis.capture(["DEBUG", "PROTOCOL", "true"]), as: .boolean(true))
        try expectDecodes(try redis.capture(["DEBUG", "PROTOCOL", "false"]), as: .boolean(false))
        try expectDecodes(try redis.capture(["DEBUG", "PROTOCOL", "double"]), as: .double(3.141))
        try expectDecodes(try redis.capture(["DEBUG", "PROTOCOL", "bignum"]), as: .bigNumber("1234567999999999999999999999999999999"))
        try expectDecodes(try redis.capture(["DEBUG", "PROTOCOL", "null"]), as: .null)
        try expectDecodes(try redis.capture(["DEBUG", "PROTOCOL", "verbatim"]), as: .bulkString(Array("This is a verbatim\nstring".utf8)))
        try expectDecodes(try redis.capture(["DEBUG", "PROTOCOL", "map"]))
        try expectDecodes(try redis.capture(["DEBUG", "PROTOCOL", "set"]))
        try expectDecodes(try redis.capture(["DEBUG", "PROTOCOL", "array"]))
        // An attribute is dropped; the reply after it is returned.
        let attributed = try redis.capture(["DEBUG", "PROTOCOL", "attrib"])
        #expect(attributed.first == UInt8(ascii: "|"))
        try expectDecodes(attributed, as: .bulkString(Array("Some real reply following the attribute".utf8)))
        // A push arrives before the command's own reply: two values, one after the other.
        let pushed = try redis.capture(["DEBUG", "PROTOCOL", "push"])
        var decoder = RESPDecoder()
        var buffer = ByteBuffer(bytes: pushed)
        #expect(try decoder.decode(buffer: &buffer) == .push([.bulkString(Array("server-cpu-usage".utf8)), .integer(42)]))
        #expect(try decoder.decode(buffer: &buffer) == .bulkString(Array("Some real reply following the push reply".utf8)))
        #expect(buffer.readableBytes == 0)
    }

    @Test func clusterSlotsCapturedFromARedisCluster() async throws {
        let cluster = try await RedisTestCluster.start()
        defer { cluster.stop() }
        let redis = try RawRedisCapture(port: cluster.nodes[0].port)
        let slots = try redis.capture(["CLUSTER", "SLOTS"])
        try expectDecodes(slots)
        guard case .array(let ranges) = try decode(slots, splits: []) else {
            Issue.record("CLUSTER SLOTS should answer an array")
            return
        }
        #expect(ranges.count == 3)
        for range in ranges {
            guard case .array(let parts) = range, parts.count >= 3, case .array(let node) = parts[2] else {
                Issue.record("a slot range has the wrong shape: \(range)")
                continue
            }
            #expect(node[0].string == "127.0.0.1")
            #expect(node[1].int64.map { cluster.nodes.map(\.port).contains(Int($0)) } == true)
        }
        try expectDecodes(try redis.capture(["CLUSTER", "INFO"]))
    }

    // MARK: - Grammar not captured from Redis

    @Test func blobErrorsAndEdgeValues() throws {
        try expectDecodes(Array("!22\r\nSYNTAX invalid\r\nsyntax\r\n".utf8), as: .error("SYNTAX invalid\r\nsyntax"))
        try expectDecodes(Array(":-9223372036854775808\r\n".utf8), as: .integer(.min))
        try expectDecodes(Array(":+7\r\n".utf8), as: .integer(7))
        try expectDecodes(Array(",inf\r\n".utf8), as: .double(.infinity))
        try expectDecodes(Array(",-inf\r\n".utf8), as: .double(-.infinity))
        try expectDecodes(Array("_\r\n".utf8), as: .null)
        try expectDecodes(Array("$-1\r\n".utf8), as: .null)
        try expectDecodes(Array("*-1\r\n".utf8), as: .null)
        try expectDecodes(Array("%0\r\n".utf8), as: .map([]))
        try expectDecodes(Array("+\r\n".utf8), as: .simpleString(""))
        // Two replies in one buffer come out one at a time.
        var decoder = RESPDecoder()
        var buffer = ByteBuffer(string: ":1\r\n:2\r\n")
        #expect(try decoder.decode(buffer: &buffer) == .integer(1))
        #expect(try decoder.decode(buffer: &buffer) == .integer(2))
        #expect(try decoder.decode(buffer: &buffer) == nil)
    }

    @Test func brokenGrammarIsAProtocolError() {
        expectRefused("?1\r\n")
        expectRefused(":12a\r\n")
        expectRefused(":\r\n")
        expectRefused(":-\r\n")
        expectRefused(":9223372036854775808\r\n")
        expectRefused("+OK\rX")
        expectRefused("$3\r\nabcXY")
        expectRefused("$-2\r\n")
        expectRefused("*-5\r\n")
        expectRefused("#x\r\n")
        expectRefused(",\r\n")
        expectRefused(",1.5x\r\n")
        expectRefused("(12a\r\n")
        expectRefused("_x\r\n")
        expectRefused("=3\r\ntxt\r\n")
        expectRefused("!-1\r\n")
        expectRefused("%-1\r\n")
    }

    @Test func limitsAreCheckedBeforeAnythingIsBuffered() throws {
        let limits = RESPDecoder.Limits(maxBulkBytes: 1_024, maxElements: 16, maxDepth: 4, maxLineBytes: 64, maxReplyBytes: 4_096)
        // Announced sizes are refused from the header alone, before their bytes arrive.
        expectRefused("$1025\r\n", limits: limits)
        expectRefused("$99999999999\r\n", limits: limits)
        expectRefused("*17\r\n", limits: limits)
        expectRefused("*4294967296\r\n", limits: limits)
        expectRefused("%9\r\n", limits: limits)
        expectRefused("*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", limits: limits)
        expectRefused("+" + String(repeating: "a", count: 65) + "\r\n", limits: limits)
        expectRefused("+" + String(repeating: "a", count: 70), limits: limits)  // no CRLF yet: refused all the same
        // At the limits themselves, replies decode.
        #expect(try decode(Array(("$1024\r\n" + String(repeating: "x", count: 1_024) + "\r\n").utf8), splits: [], limits: limits) != nil)
        #expect(try decode(Array(("*16\r\n" + String(repeating: ":1\r\n", count: 16)).utf8), splits: [], limits: limits) != nil)
        #expect(try decode(Array("*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n".utf8), splits: [], limits: limits) != nil)
        // An incomplete reply that has taken more than the reply cap is refused, however it grew.
        var decoder = RESPDecoder(limits: limits)
        var buffer = ByteBuffer(string: "*16\r\n")
        for _ in 0..<15 { buffer.writeString("$1000\r\n" + String(repeating: "y", count: 1_000) + "\r\n") }
        #expect(throws: RedisClientError.self) { _ = try decoder.decode(buffer: &buffer) }
    }

    @Test func truncationsNeverCompleteAndGarbageNeverCrashes() throws {
        // Every proper prefix of a valid reply is incomplete, never an error or a value.
        let reply = Array("*3\r\n$5\r\nhello\r\n%1\r\n+k\r\n,2.5\r\n*2\r\n:1\r\n_\r\n".utf8)
        for end in 0..<reply.count {
            #expect(try decode(Array(reply[0..<end]), splits: []) == nil)
        }
        // Random bytes and random mutations of valid replies: a value, nil or a protocol error,
        // never a crash or a hang; the held bytes never pass the cap.
        var random = SystemRandomNumberGenerator()
        let limits = RESPDecoder.Limits(maxBulkBytes: 256, maxElements: 32, maxDepth: 6, maxLineBytes: 64, maxReplyBytes: 1_024)
        let alphabet = Array("+-:$*_#,(!=%~>|\r\n0123456789-tfa".utf8)
        for round in 0..<20_000 {
            var bytes: [UInt8]
            if round % 2 == 0 {
                bytes = (0..<Int.random(in: 1...64, using: &random)).map { _ in alphabet.randomElement(using: &random)! }
            } else {
                bytes = reply
                for _ in 0..<Int.random(in: 1...3, using: &random) {
                    bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
                }
            }
            let processor = NIOSingleStepByteToMessageProcessor(RESPDecoder(limits: limits))
            do {
                let size = Int.random(in: 1...8, using: &random)
                for start in stride(from: 0, to: bytes.count, by: size) {
                    try processor.process(buffer: ByteBuffer(bytes: bytes[start..<min(bytes.count, start + size)])) { _ in }
                }
            } catch let error as RedisClientError {
                #expect(error.code == .protocolError)
            }
        }
    }

    @Test func encodedValuesDecodeToThemselves() throws {
        let values: [RESPValue] = [
            .simpleString("OK"), .error("ERR x"), .error("multi\r\nline"), .integer(-42), .bulkString([0, 13, 10, 255]), .null,
            .array([.integer(1), .array([.null, .boolean(true)])]), .double(-0.5), .bigNumber("-123456789012345678901234567890"),
            .map([RESPMapEntry(key: .simpleString("a"), value: .set([.integer(1)]))]), .push([.bulkString(Array("message".utf8))]),
        ]
        for value in values {
            var buffer = ByteBuffer()
            value.encode(into: &buffer)
            try expectDecodes(Array(buffer.readableBytesView), as: value)
        }
    }

    // MARK: - The connection handler

    @Test func aProtocolErrorFailsThatConnectionsCommandsAndClosesIt() async throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(RedisCommandHandler(timeout: .seconds(5)))
        let first = channel.eventLoop.makePromise(of: RESPValue.self)
        let second = channel.eventLoop.makePromise(of: RESPValue.self)
        let third = channel.eventLoop.makePromise(of: RESPValue.self)
        try channel.writeOutbound(RedisRequest(command: RedisCommand("GET", "k"), promise: first))
        try channel.writeOutbound(RedisRequest(command: RedisCommand("GET", "k"), promise: second))
        try channel.writeOutbound(RedisRequest(command: RedisCommand("PING"), promise: third))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"))
        // The first reply is whole, after an out-of-band push (not an answer); then garbage.
        try channel.writeInbound(ByteBuffer(string: ">1\r\n+note\r\n$1\r\nv\r\n?garbage\r\n"))
        #expect(try await first.futureResult.get() == .bulkString(Array("v".utf8)))
        await #expect(throws: RedisClientError(.protocolError, "invalid RESP: a reply began with an unknown type byte 63")) {
            try await second.futureResult.get()
        }
        await #expect(throws: RedisClientError.self) { try await third.futureResult.get() }
        #expect(!channel.isActive)
    }
}
