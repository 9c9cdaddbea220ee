package fleetbridge.testagent;

import io.opentelemetry.opamp.client.OpampClient;
import io.opentelemetry.opamp.client.OpampClientBuilder;
import io.opentelemetry.opamp.client.internal.connectivity.http.OkHttpSender;
import io.opentelemetry.opamp.client.internal.connectivity.websocket.OkHttpWebSocket;
import io.opentelemetry.opamp.client.internal.connectivity.websocket.WebSocket;
import io.opentelemetry.opamp.client.internal.request.delay.PeriodicDelay;
import io.opentelemetry.opamp.client.internal.request.delay.RetryPeriodicDelay;
import io.opentelemetry.opamp.client.internal.request.service.HttpRequestService;
import io.opentelemetry.opamp.client.internal.request.service.WebSocketRequestService;
import io.opentelemetry.opamp.client.internal.response.MessageData;
import io.opentelemetry.opamp.client.internal.state.State;
import io.opentelemetry.opamp.client.request.service.RequestService;
import java.io.BufferedReader;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import okhttp3.Interceptor;
import okhttp3.OkHttpClient;
import okhttp3.Request;
import okhttp3.Response;
import okio.Buffer;
import okio.ByteString;
import opamp.proto.AgentConfigFile;
import opamp.proto.AgentConfigMap;
import opamp.proto.AgentRemoteConfig;
import opamp.proto.AgentToServer;
import opamp.proto.RemoteConfigStatus;
import opamp.proto.RemoteConfigStatuses;
import opamp.proto.ServerErrorResponse;
import opamp.proto.ServerToAgent;
import opamp.proto.ServerToAgentFlags;

/**
 * Fleetbridge test agent on the real OpenTelemetry Java OpAMP client
 * (io.opentelemetry.contrib:opentelemetry-opamp-client), driven by a test harness:
 *
 * <ul>
 *   <li>stdin: one JSON object per line, a command: {"cmd":"mode","remoteConfig":"apply"|"fail"|"ignore","error":"..."}
 *       or {"cmd":"stop"}.
 *   <li>stdout: one JSON object per line, an event (see the emit calls).
 *   <li>stderr: human-readable logs (the library's and OkHttp's java.util.logging output).
 * </ul>
 *
 * <p>The transport is the endpoint's scheme: http(s):// uses the library's HttpRequestService
 * (polling every --poll-interval-ms), ws(s):// its WebSocketRequestService. Both run on an
 * OkHttpClient of ours, whose interceptor adds the --header values (the library has no header
 * option) and, over HTTP, observes every AgentToServer/ServerToAgent (events agent_to_server,
 * server_to_agent); over WebSocket a thin wrapper around the library's OkHttpWebSocket does the
 * observing. Neither changes what the library sends or when.
 *
 * <p>Exits 0 after {"cmd":"stop"}, when stdin closes, on SIGTERM/SIGINT, or after
 * --max-lifetime-seconds. Stopping calls the library's close() and waits (bounded) until the
 * AgentDisconnect it prepares went out: over WebSocket close() sends it at once, over HTTP the
 * library sends it with its next scheduled poll.
 */
public final class JavaTestAgent {
  private static final String LIBRARY = "io.opentelemetry.contrib:opentelemetry-opamp-client";
  private static final Object OUT_LOCK = new Object();
  private static PrintStream out;

  // ---------------------------------------------------------------------------------------------
  // stdout events

  static void emit(String event, Object... kv) {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("event", event);
    m.put("ts", System.currentTimeMillis() / 1000.0);
    for (int i = 0; i + 1 < kv.length; i += 2) m.put(String.valueOf(kv[i]), kv[i + 1]);
    String line = Json.encode(m);
    synchronized (OUT_LOCK) {
      out.print(line);
      out.print('\n');
      out.flush();
    }
  }

  static Map<String, Object> map(Object... kv) {
    Map<String, Object> m = new LinkedHashMap<>();
    for (int i = 0; i + 1 < kv.length; i += 2) m.put(String.valueOf(kv[i]), kv[i + 1]);
    return m;
  }

  // ---------------------------------------------------------------------------------------------
  // Flags

  static final class Args {
    String endpoint;
    String instanceUid;
    final Map<String, String> attrs = new LinkedHashMap<>();
    final Map<String, String> idAttrs = new LinkedHashMap<>();
    final Map<String, String> headers = new LinkedHashMap<>();
    long pollIntervalMs = 30_000; // the library's default (HttpRequestService.DEFAULT_DELAY_BETWEEN_REQUESTS)
    long retryInitialMs = 30_000; // the library's default (DEFAULT_DELAY_BETWEEN_RETRIES, doubling)
    long disconnectWaitMs = -1; // default: poll interval + 2 s
    double maxLifetimeSeconds = 600;
    /** See nudge(): off by default, so that the library's own behaviour is what runs. */
    boolean nudgeWebSocket = false;

    static Args parse(String[] argv) {
      Args a = new Args();
      for (int i = 0; i < argv.length; i++) {
        String flag = argv[i];
        if (i + 1 >= argv.length) throw new IllegalArgumentException(flag + " needs a value");
        String v = argv[++i];
        switch (flag) {
          case "--endpoint" -> a.endpoint = v;
          case "--instance-uid" -> a.instanceUid = v;
          case "--attr" -> put(a.attrs, flag, v);
          case "--id-attr" -> put(a.idAttrs, flag, v);
          case "--header" -> put(a.headers, flag, v);
          case "--poll-interval-ms" -> a.pollIntervalMs = Long.parseLong(v);
          case "--retry-initial-ms" -> a.retryInitialMs = Long.parseLong(v);
          case "--disconnect-wait-ms" -> a.disconnectWaitMs = Long.parseLong(v);
          case "--max-lifetime-seconds" -> a.maxLifetimeSeconds = Double.parseDouble(v);
          case "--nudge-websocket" -> a.nudgeWebSocket = Boolean.parseBoolean(v);
          default -> throw new IllegalArgumentException("unknown flag " + flag);
        }
      }
      if (a.endpoint == null) throw new IllegalArgumentException("--endpoint is required");
      if (a.disconnectWaitMs < 0) a.disconnectWaitMs = a.pollIntervalMs + 2000;
      return a;
    }

    private static void put(Map<String, String> m, String flag, String kv) {
      int eq = kv.indexOf('=');
      if (eq <= 0) throw new IllegalArgumentException(flag + " expects k=v, got " + kv);
      m.put(kv.substring(0, eq), kv.substring(eq + 1));
    }
  }

  // ---------------------------------------------------------------------------------------------
  // State

  private final Args args;
  private final boolean websocket;
  private final byte[] uid;
  private final String uidSource;
  private volatile String mode = "apply";
  private volatile String failMessage = "rejected by java test agent";
  private volatile String lastConfigHash;
  private volatile RemoteConfigStatus lastStatusSet;
  /** "hash/STATUS" of statuses given to the library and not yet seen going out. */
  private final Set<String> pendingStatuses = ConcurrentHashMap.newKeySet();
  private final EffectiveConfigState effectiveConfig = new EffectiveConfigState();
  private final AtomicBoolean connectedOnce = new AtomicBoolean(false);
  private final AtomicBoolean failing = new AtomicBoolean(false);
  private final AtomicInteger responses = new AtomicInteger();
  private final CountDownLatch disconnectSeen = new CountDownLatch(1);
  private final CountDownLatch wsClosed = new CountDownLatch(1);
  private volatile boolean disconnectDelivered;
  private final AtomicBoolean stopped = new AtomicBoolean(false);
  private final CountDownLatch stopDone = new CountDownLatch(1);
  private OpampClient client;

  JavaTestAgent(Args args) {
    this.args = args;
    this.websocket = args.endpoint.startsWith("ws://") || args.endpoint.startsWith("wss://");
    if (args.instanceUid != null) {
      UUID u = UUID.fromString(args.instanceUid);
      ByteBuffer b = ByteBuffer.allocate(16);
      b.putLong(u.getMostSignificantBits()).putLong(u.getLeastSignificantBits());
      this.uid = b.array();
      this.uidSource = "flag";
    } else {
      // What the builder would generate itself (a UUIDv7), taken here so that it can be reported.
      this.uid = OpampClientBuilder.createRandomInstanceUid();
      this.uidSource = "library";
    }
  }

  static String uuidString(byte[] b) {
    if (b.length != 16) return ByteString.of(b).hex();
    ByteBuffer bb = ByteBuffer.wrap(b);
    return new UUID(bb.getLong(), bb.getLong()).toString();
  }

  static String libraryVersion() {
    try (InputStream in =
        OpampClient.class.getResourceAsStream("/io/opentelemetry/contrib/opamp/client/version.properties")) {
      if (in == null) return "unknown";
      Properties p = new Properties();
      p.load(in);
      return p.getProperty("contrib.version", p.toString());
    } catch (IOException e) {
      return "unknown";
    }
  }

  /** The effective config the library reports (ReportsEffectiveConfig): the last applied remote config. */
  static final class EffectiveConfigState extends State.EffectiveConfig {
    private volatile opamp.proto.EffectiveConfig value;

    @Override
    public opamp.proto.EffectiveConfig get() {
      return value;
    }

    void set(AgentConfigMap configMap) {
      value = new opamp.proto.EffectiveConfig.Builder().config_map(configMap).build();
      notifyUpdate();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Wire observation (never changes what is sent)

  void outgoing(byte[] payload, boolean delivered, Integer httpStatus, String error) {
    AgentToServer m;
    try {
      m = AgentToServer.ADAPTER.decode(payload);
    } catch (IOException | RuntimeException e) {
      emit("error", "source", "agent", "message", "cannot decode our own AgentToServer: " + e);
      return;
    }
    Map<String, Object> rcs = null;
    if (m.remote_config_status != null) {
      rcs =
          map(
              "status", statusName(m.remote_config_status.status),
              "hash", m.remote_config_status.last_remote_config_hash.hex(),
              "errorMessage", m.remote_config_status.error_message);
    }
    emit(
        "agent_to_server",
        "seq", m.sequence_num,
        "instanceUid", uuidString(m.instance_uid.toByteArray()),
        "capabilities", m.capabilities,
        "described", m.agent_description != null,
        "remoteConfigStatus", rcs,
        "effectiveConfig", m.effective_config != null,
        "disconnect", m.agent_disconnect != null,
        "flags", m.flags,
        "bytes", payload.length,
        "delivered", delivered,
        "httpStatus", httpStatus,
        "error", error);
    if (rcs != null && delivered) {
      String key = rcs.get("hash") + "/" + rcs.get("status");
      if (pendingStatuses.remove(key)) {
        emit(
            "config_status_sent",
            "hash", rcs.get("hash"),
            "status", rcs.get("status"),
            "errorMessage", rcs.get("errorMessage"),
            "seq", m.sequence_num);
      }
    }
    if (m.agent_disconnect != null) {
      disconnectDelivered = disconnectDelivered || delivered;
      disconnectSeen.countDown();
    }
  }

  ServerToAgent incoming(byte[] payload) {
    ServerToAgent m;
    try {
      m = ServerToAgent.ADAPTER.decode(payload);
    } catch (IOException | RuntimeException e) {
      emit("error", "source", "agent", "message", "cannot decode a ServerToAgent: " + e);
      return null;
    }
    long fullState = ServerToAgentFlags.ServerToAgentFlags_ReportFullState.getValue();
    Long heartbeat = null;
    if (m.connection_settings != null && m.connection_settings.opamp != null) {
      heartbeat = m.connection_settings.opamp.heartbeat_interval_seconds;
    }
    ServerErrorResponse err = m.error_response;
    emit(
        "server_to_agent",
        "flags", m.flags,
        "reportFullState", (m.flags & fullState) == fullState,
        "connectionSettings", m.connection_settings != null,
        "heartbeatIntervalSeconds", heartbeat,
        "remoteConfig", m.remote_config != null,
        "remoteConfigHash", m.remote_config != null ? m.remote_config.config_hash.hex() : null,
        "errorResponse", err == null ? null : map("type", err.type.name(), "message", err.error_message),
        "newInstanceUid",
            m.agent_identification != null && m.agent_identification.new_instance_uid.size() > 0
                ? uuidString(m.agent_identification.new_instance_uid.toByteArray())
                : null,
        "bytes", payload.length);
    return m;
  }

  /**
   * --nudge-websocket: what an integrator of this library has to add for its WebSocket transport
   * to work. Over WebSocket the library sends a message only when some state changes: it has no
   * heartbeat, sends nothing of its own when a connection opens (its first message, built before
   * the socket is open, is dropped together with the agent description it carried), and answers
   * ReportFullState only with its next message. Telling the library that our effective-config
   * state changed (State.EffectiveConfig.notifyUpdate(), public API) makes it send one message
   * now, with everything it has queued. Used on a new connection and after ReportFullState.
   */
  void nudge(String why) {
    if (!websocket || !args.nudgeWebSocket || stopped.get()) return;
    emit("nudge", "reason", why);
    try {
      effectiveConfig.notifyUpdate();
    } catch (RuntimeException e) {
      emit("error", "source", "agent", "message", "nudge failed: " + e);
    }
  }

  /** Adds the --header values to every request; over HTTP also observes each exchange. */
  final class HeaderAndObserver implements Interceptor {
    @Override
    public Response intercept(Chain chain) throws IOException {
      Request.Builder b = chain.request().newBuilder();
      for (Map.Entry<String, String> h : args.headers.entrySet()) b.header(h.getKey(), h.getValue());
      Request req = b.build();
      byte[] body = null;
      if (req.body() != null) {
        Buffer buf = new Buffer();
        req.body().writeTo(buf);
        body = buf.readByteArray();
      }
      Response resp;
      try {
        resp = chain.proceed(req);
      } catch (IOException e) {
        if (body != null) outgoing(body, false, null, e.toString());
        throw e;
      }
      if (body != null) {
        boolean ok = resp.isSuccessful();
        outgoing(body, ok, resp.code(), ok ? null : resp.message());
        if (ok) incoming(resp.peekBody(64L * 1024 * 1024).bytes());
      }
      return resp;
    }
  }

  /** The library's OkHttpWebSocket, observed: every frame in and out (the 0 header stripped). */
  final class ObservedWebSocket implements WebSocket {
    private final WebSocket delegate;

    ObservedWebSocket(WebSocket delegate) {
      this.delegate = delegate;
    }

    @Override
    public void open(Listener listener) {
      delegate.open(
          new Listener() {
            @Override
            public void onOpen() {
              emit("ws_open");
              listener.onOpen();
            }

            @Override
            public void onClosing() {
              emit("ws_closing");
              listener.onClosing();
            }

            @Override
            public void onClosed() {
              emit("ws_closed");
              wsClosed.countDown();
              listener.onClosed();
            }

            @Override
            public void onMessage(byte[] data) {
              ServerToAgent m = incoming(stripHeader(data));
              listener.onMessage(data);
              long fullState = ServerToAgentFlags.ServerToAgentFlags_ReportFullState.getValue();
              if (m != null && (m.flags & fullState) == fullState) nudge("report_full_state");
            }

            @Override
            public void onFailure(Throwable t) {
              emit("ws_failure", "error", String.valueOf(t));
              wsClosed.countDown();
              listener.onFailure(t);
            }
          });
    }

    @Override
    public void close(int code, String reason) {
      delegate.close(code, reason);
    }

    @Override
    public boolean send(byte[] request) {
      boolean ok = delegate.send(request);
      outgoing(stripHeader(request), ok, null, ok ? null : "not sent: the WebSocket is not open");
      return ok;
    }
  }

  /** OpAMP WebSocket frames start with a varint header (0). */
  static byte[] stripHeader(byte[] data) {
    int i = 0;
    while (i < data.length && (data[i] & 0x80) != 0) i++;
    i++;
    return Arrays.copyOfRange(data, Math.min(i, data.length), data.length);
  }

  static String statusName(RemoteConfigStatuses s) {
    return s == null ? "UNSET" : s.name().replace("RemoteConfigStatuses_", "");
  }

  // ---------------------------------------------------------------------------------------------
  // The library's callbacks

  final class Callbacks implements OpampClient.Callbacks {
    @Override
    public void onConnect(OpampClient c) {
      int n = responses.incrementAndGet();
      boolean first = connectedOnce.compareAndSet(false, true);
      boolean recovered = failing.getAndSet(false);
      // HTTP: called for every response; WebSocket: once per opened connection.
      if (first || recovered || websocket) emit("connected", "first", first, "responses", n, "transport", transport());
      nudge("connected");
    }

    @Override
    public void onConnectFailed(OpampClient c, Throwable t) {
      if (!failing.getAndSet(true) || websocket) {
        emit("connect_failed", "error", String.valueOf(t), "errorType", t == null ? null : t.getClass().getSimpleName());
      }
    }

    @Override
    public void onErrorResponse(OpampClient c, ServerErrorResponse e) {
      emit("error", "source", "server", "type", e.type.name(), "message", e.error_message);
    }

    @Override
    public void onMessage(OpampClient c, MessageData data) {
      AgentRemoteConfig rc = data.getRemoteConfig();
      if (rc == null) return;
      try {
        handleRemoteConfig(c, rc);
      } catch (RuntimeException e) {
        emit("error", "source", "agent", "message", "remote config handling failed: " + e);
      }
    }
  }

  void handleRemoteConfig(OpampClient c, AgentRemoteConfig rc) {
    String hash = rc.config_hash.hex();
    Map<String, AgentConfigFile> files = rc.config != null ? rc.config.config_map : Map.of();
    AgentConfigFile entry = files.get("");
    List<String> names = new ArrayList<>(files.keySet());
    names.sort(null);
    boolean repeat = hash.equals(lastConfigHash);
    lastConfigHash = hash;
    emit(
        "remote_config",
        "hash", hash,
        "body", entry == null ? null : entry.body.utf8(),
        "contentType", entry == null ? null : entry.content_type,
        "files", names,
        "repeat", repeat);

    String m = mode;
    if (m.equals("ignore")) return;
    boolean fail = m.equals("fail");
    RemoteConfigStatus status =
        new RemoteConfigStatus.Builder()
            .last_remote_config_hash(rc.config_hash)
            .status(fail ? RemoteConfigStatuses.RemoteConfigStatuses_FAILED : RemoteConfigStatuses.RemoteConfigStatuses_APPLIED)
            .error_message(fail ? failMessage : "")
            .build();
    String statusName = statusName(status.status);
    if (status.equals(lastStatusSet)) {
      // setRemoteConfigStatus ignores an equal status: nothing would go out.
      emit("config_status_unchanged", "hash", hash, "status", statusName);
      return;
    }
    lastStatusSet = status;
    pendingStatuses.add(hash + "/" + statusName);
    emit("config_status_queued", "hash", hash, "status", statusName, "errorMessage", status.error_message);
    c.setRemoteConfigStatus(status);
    // Reported after the status, so that the effective config is the one that came with/after APPLIED.
    if (!fail && rc.config != null) effectiveConfig.set(rc.config);
  }

  String transport() {
    return websocket ? "websocket" : "http";
  }

  // ---------------------------------------------------------------------------------------------
  // Life cycle

  void start() {
    OkHttpClient http =
        new OkHttpClient.Builder()
            .addInterceptor(new HeaderAndObserver())
            .connectTimeout(Duration.ofSeconds(5))
            .readTimeout(Duration.ofSeconds(20))
            .build();
    RequestService service;
    if (websocket) {
      service =
          WebSocketRequestService.create(
              new ObservedWebSocket(OkHttpWebSocket.create(args.endpoint, http)),
              RetryPeriodicDelay.create(Duration.ofMillis(args.retryInitialMs)));
    } else {
      service =
          HttpRequestService.create(
              OkHttpSender.create(args.endpoint, http),
              PeriodicDelay.ofFixedDuration(Duration.ofMillis(args.pollIntervalMs)),
              RetryPeriodicDelay.create(Duration.ofMillis(args.retryInitialMs)));
    }
    OpampClientBuilder builder =
        OpampClient.builder()
            .setRequestService(service)
            .setInstanceUid(uid)
            .enableRemoteConfig()
            .enableEffectiveConfigReporting()
            .setEffectiveConfigState(effectiveConfig);
    Map<String, String> id = new LinkedHashMap<>();
    id.put("service.name", "java-test-agent");
    id.putAll(args.idAttrs);
    id.forEach(builder::putIdentifyingAttribute);
    args.attrs.forEach(builder::putNonIdentifyingAttribute);
    // build() starts the client: the first request is sent from here.
    client = builder.build(new Callbacks());
    emit(
        "started",
        "instanceUid", uuidString(uid),
        "instanceUidSource", uidSource,
        "library", LIBRARY,
        "libraryVersion", libraryVersion(),
        "transport", transport(),
        "endpoint", args.endpoint,
        "identifying", id,
        "nonIdentifying", args.attrs,
        "pollIntervalMs", websocket ? null : args.pollIntervalMs,
        "retryInitialMs", args.retryInitialMs,
        "nudgeWebSocket", websocket && args.nudgeWebSocket,
        "javaVersion", System.getProperty("java.version"),
        "pid", ProcessHandle.current().pid());
  }

  /** Idempotent; later callers wait for the first one to finish. */
  void stop(String reason) {
    if (!stopped.compareAndSet(false, true)) {
      try {
        stopDone.await(args.disconnectWaitMs + 5000, TimeUnit.MILLISECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      return;
    }
    long t0 = System.nanoTime();
    try {
      if (client != null) {
        client.close();
        // WebSocket: close() sent the AgentDisconnect and a close frame; HTTP: the library sends
        // the AgentDisconnect with its next scheduled poll (its executor runs delayed tasks after
        // shutdown), which only happens while this process is alive.
        boolean seen = disconnectSeen.await(args.disconnectWaitMs, TimeUnit.MILLISECONDS);
        if (websocket) wsClosed.await(3, TimeUnit.SECONDS);
        emit(
            "stopped",
            "reason", reason,
            "stopMs", (System.nanoTime() - t0) / 1_000_000,
            "disconnectSeen", seen,
            "disconnectDelivered", disconnectDelivered);
      } else {
        emit("stopped", "reason", reason, "stopMs", 0, "disconnectSeen", false, "disconnectDelivered", false);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (IOException | RuntimeException e) {
      emit("error", "source", "agent", "message", "stop failed: " + e);
    } finally {
      stopDone.countDown();
    }
  }

  /** Handles one command line; false when the agent should exit. */
  boolean handle(String line) {
    Object parsed;
    try {
      parsed = Json.parse(line);
    } catch (IllegalArgumentException e) {
      emit("error", "source", "command", "message", "bad JSON: " + e.getMessage());
      return true;
    }
    if (!(parsed instanceof Map<?, ?> cmd)) {
      emit("error", "source", "command", "message", "a command must be a JSON object");
      return true;
    }
    Object name = cmd.get("cmd");
    if ("stop".equals(name)) {
      emit("ack", "cmd", "stop");
      return false;
    }
    if ("mode".equals(name)) {
      Object rc = cmd.get("remoteConfig");
      if (!"apply".equals(rc) && !"fail".equals(rc) && !"ignore".equals(rc)) {
        emit("error", "source", "command", "message", "remoteConfig must be apply, fail or ignore");
        return true;
      }
      if (cmd.get("error") instanceof String e) failMessage = e;
      mode = (String) rc;
      emit("ack", "cmd", "mode", "remoteConfig", mode, "error", failMessage);
      return true;
    }
    emit("error", "source", "command", "message", "unknown command " + name);
    return true;
  }

  public static void main(String[] argv) throws Exception {
    out = new PrintStream(new FileOutputStream(FileDescriptor.out), false, StandardCharsets.UTF_8);
    // Anything else printing to System.out must not corrupt the event stream.
    System.setOut(System.err);
    Args args;
    try {
      args = Args.parse(argv);
    } catch (IllegalArgumentException e) {
      System.err.println("java-test-agent: " + e.getMessage());
      System.exit(2);
      return;
    }
    JavaTestAgent agent = new JavaTestAgent(args);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> agent.stop("signal"), "stop-on-signal"));
    Thread lifetime =
        new Thread(
            () -> {
              try {
                Thread.sleep((long) (args.maxLifetimeSeconds * 1000));
                agent.stop("max lifetime");
                System.exit(0);
              } catch (InterruptedException e) {
                // exiting anyway
              }
            },
            "max-lifetime");
    lifetime.setDaemon(true);
    lifetime.start();

    agent.start();
    String reason = "stdin closed";
    try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
      for (String line; (line = in.readLine()) != null; ) {
        if (line.isBlank()) continue;
        if (!agent.handle(line)) {
          reason = "command";
          break;
        }
      }
    } catch (IOException e) {
      reason = "stdin error: " + e.getMessage();
    }
    agent.stop(reason);
    System.exit(0);
  }
}
