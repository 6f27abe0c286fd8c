import LicenseCore
import LicenseWire
import NIOCore

/// Sits in front of TLS and looks at what the client sends first.
///
/// - Anything but a TLS handshake record is a plaintext client: it gets one plaintext error frame
///   (`TLS_REQUIRED`) and is closed.
/// - A ClientHello that offers ALPN protocols but not `coditect-license/1` is answered with the
///   fatal `no_application_protocol` alert and closed, as RFC 7301 §3.2 says a server should
///   (NIOSSL's own ALPN callback would carry on without a protocol). A client that offers no
///   ALPN at all is served.
/// - Everything else passes on untouched, and the sniffer removes itself.
///
/// It holds at most the first TLS record (16 KiB and its header) while that record arrives.
final class TLSSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// The fatal alert `no_application_protocol` (120) in a TLS 1.2 record.
    static let noApplicationProtocolAlert: [UInt8] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 120]

    private var held: ByteBuffer?
    private var done = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return context.fireChannelRead(data) }
        var bytes = unwrapInboundIn(data)
        if var earlier = held {
            earlier.writeBuffer(&bytes)
            bytes = earlier
            held = nil
        }
        guard let first = bytes.getInteger(at: bytes.readerIndex, as: UInt8.self) else { return }
        guard first == 0x16 else { return refusePlaintext(context) }
        switch ClientHelloInspection(bytes) {
        case .incomplete:
            held = bytes
        case .offers(let protocols) where !protocols.isEmpty && !protocols.contains(WireProtocol.alpn):
            done = true
            context.fireUserInboundEventTriggered(TLSHandshakeMetrics.Refused(reason: .noApplicationProtocol))
            let channel = context.channel
            let alert = context.channel.allocator.buffer(bytes: Self.noApplicationProtocolAlert)
            context.writeAndFlush(wrapOutboundOut(alert)).whenComplete { _ in channel.close(promise: nil) }
        case .offers, .unreadable:
            done = true
            context.fireChannelRead(wrapInboundOut(bytes))
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    private func refusePlaintext(_ context: ChannelHandlerContext) {
        done = true
        context.fireUserInboundEventTriggered(TLSHandshakeMetrics.Refused(reason: .notTLS))
        let error = LicenseError(.failedPrecondition, .tlsRequired, "this port speaks TLS only (ALPN \(WireProtocol.alpn))")
        if let frame = try? FrameEncoder.frame(ServerFrame.failure(id: 0, error), allocator: context.channel.allocator) {
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(frame)).whenComplete { _ in channel.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
    }
}

/// What the first TLS record says about ALPN (RFC 8446 §4.1.2, RFC 7301 §3.1).
enum ClientHelloInspection: Equatable {
    /// The first record has not fully arrived.
    case incomplete
    /// A ClientHello; the ALPN protocols it offers (empty when it has no ALPN extension).
    case offers([String])
    /// Not a ClientHello this can read (another message, a hello split over records, a malformed
    /// one): TLS itself decides.
    case unreadable

    /// The largest first record worth waiting for: 2^14 bytes of payload and the header.
    static let maxRecord = 16_384 + 5

    init(_ buffer: ByteBuffer) {
        var record = buffer
        guard let type = record.readInteger(as: UInt8.self), let _ = record.readInteger(as: UInt16.self),
              let length = record.readInteger(as: UInt16.self)
        else { self = buffer.readableBytes < 5 ? .incomplete : .unreadable; return }
        guard type == 0x16, Int(length) + 5 <= Self.maxRecord else { self = .unreadable; return }
        guard var body = record.readSlice(length: Int(length)) else { self = .incomplete; return }
        self = Self.read(&body) ?? .unreadable
    }

    private static func read(_ body: inout ByteBuffer) -> ClientHelloInspection? {
        guard body.readInteger(as: UInt8.self) == 1,  // ClientHello
              let high = body.readInteger(as: UInt8.self), let low = body.readInteger(as: UInt16.self),
              Int(high) << 16 | Int(low) <= body.readableBytes,  // the whole hello is in this record
              body.moveReaderIndexIfPossible(by: 2 + 32),  // legacy_version, random
              skip(&body, lengthBytes: 1),  // legacy_session_id
              skip(&body, lengthBytes: 2),  // cipher_suites
              skip(&body, lengthBytes: 1)  // legacy_compression_methods
        else { return nil }
        guard body.readableBytes > 0 else { return .offers([]) }  // no extensions at all
        guard let extensionsLength = body.readInteger(as: UInt16.self), var extensions = body.readSlice(length: Int(extensionsLength)) else { return nil }
        while extensions.readableBytes > 0 {
            guard let type = extensions.readInteger(as: UInt16.self), let size = extensions.readInteger(as: UInt16.self),
                  var data = extensions.readSlice(length: Int(size))
            else { return nil }
            guard type == 16 else { continue }  // application_layer_protocol_negotiation
            guard let listLength = data.readInteger(as: UInt16.self), var list = data.readSlice(length: Int(listLength)) else { return nil }
            var protocols: [String] = []
            while list.readableBytes > 0 {
                guard let count = list.readInteger(as: UInt8.self), let name = list.readString(length: Int(count)) else { return nil }
                protocols.append(name)
            }
            return .offers(protocols)
        }
        return .offers([])
    }

    private static func skip(_ buffer: inout ByteBuffer, lengthBytes: Int) -> Bool {
        let length: Int?
        switch lengthBytes {
        case 1: length = buffer.readInteger(as: UInt8.self).map(Int.init)
        default: length = buffer.readInteger(as: UInt16.self).map(Int.init)
        }
        guard let length else { return false }
        return buffer.moveReaderIndexIfPossible(by: length)
    }
}

private extension ByteBuffer {
    mutating func moveReaderIndexIfPossible(by count: Int) -> Bool {
        guard readableBytes >= count else { return false }
        moveReaderIndex(forwardBy: count)
        return true
    }
}
