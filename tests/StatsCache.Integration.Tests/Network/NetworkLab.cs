using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;

namespace StatsCache.Integration.Tests.Network;

/// <summary>
/// Hosts on one machine that can lose each other: each host is a network namespace of its own, joined to the others
/// and to this machine's own namespace (<see cref="HostAddress"/>, where PostgreSQL and the test's callers are) by a
/// switch in this process. Every IPv4 packet between them crosses the switch, which drops, delays and loses packets by
/// the <see cref="Fault"/>s set: partitions, one-way cuts, a cut from one port, delay and loss on every link.
/// </summary>
/// <remarks>
/// Why a switch of our own rather than veth pairs on a bridge with <c>tc netem</c> and nftables: this kernel has no
/// <c>sch_netem</c> (nor NFQUEUE), so nothing in it can delay a packet; a TUN device per host, read and written here,
/// can. Packets are still real: every host runs the kernel's own TCP (retransmission, timeouts) over these links.
/// Only addresses of the lab's own subnet are routed to the switch, so no traffic can leave the machine.
/// Needs root (namespaces, TUN devices); <see cref="CreateAsync"/> says so when it cannot set up.
/// </remarks>
public sealed class NetworkLab : IAsyncDisposable
{
    private const string Prefix = "scl";
    private const int HostOctet = 1;

    private readonly string _id;
    private readonly string _subnet;
    private readonly byte[] _subnetBytes;
    private readonly TunDevice _hostDevice;
    private readonly Dictionary<string, LabHost> _hosts = new(StringComparer.Ordinal);
    private readonly Port?[] _ports = new Port?[256];
    private readonly List<Thread> _readers = [];
    private readonly CancellationTokenSource _stopping = new();
    private volatile Fault[] _faults = [];
    private long _forwarded;
    private long _dropped;

    private NetworkLab(string id, string subnet, TunDevice hostDevice)
    {
        _id = id;
        _subnet = subnet;
        _subnetBytes = [.. subnet.Split('.').Select(b => byte.Parse(b, CultureInfo.InvariantCulture))];
        _hostDevice = hostDevice;
    }

    /// <summary>This machine's own address on the lab's subnet: PostgreSQL listens here, callers reach hosts from here.</summary>
    public IPAddress HostAddress => IPAddress.Parse($"{_subnet}.{HostOctet}");

    /// <summary>The lab's subnet in CIDR notation, for PostgreSQL's pg_hba.</summary>
    public string Subnet => $"{_subnet}.0/24";

    public LabHost this[string name] => _hosts[name];

    /// <summary>Packets the switch passed on and dropped (by a fault or a loss) so far.</summary>
    public (long Forwarded, long Dropped) Counts => (Interlocked.Read(ref _forwarded), Interlocked.Read(ref _dropped));

    /// <summary>Makes the lab: one namespace per host name, each with an address of the lab's subnet, all reachable.</summary>
    public static async Task<NetworkLab> CreateAsync(params string[] hostNames)
    {
        if (Environment.UserName != "root")
        {
            throw new InvalidOperationException("The network lab needs root (network namespaces, TUN devices); ./test.sh runs as root in CI.");
        }

        await RemoveLeftoversAsync();
        var id = Convert.ToHexString(BitConverter.GetBytes(Random.Shared.Next())).ToLowerInvariant()[..4];
        var subnet = await FreeSubnetAsync();
        var lab = new NetworkLab(id, subnet, new TunDevice($"{Prefix}{id}h"));
        try
        {
            await IpAsync("addr", "add", $"{subnet}.{HostOctet}/24", "dev", lab._hostDevice.Name);
            await IpAsync("link", "set", lab._hostDevice.Name, "up");
            lab._ports[HostOctet] = new Port(lab._hostDevice, null);
            var octet = 10;
            foreach (var name in hostNames)
            {
                await lab.AddHostAsync(name, octet++);
            }

            lab.StartReading(lab._ports[HostOctet]!);
            foreach (var host in lab._hosts.Values)
            {
                lab.StartReading(lab._ports[host.Octet]!);
            }

            return lab;
        }
        catch
        {
            await lab.DisposeAsync();
            throw;
        }
    }

    /// <summary>Replaces the faults in force (none: every link healthy).</summary>
    public void Set(params Fault[] faults) => _faults = faults;

    /// <summary>Ends every fault.</summary>
    public void Heal() => _faults = [];

    /// <summary>Runs a command in a host's namespace (<c>ip netns exec</c>), for processes of the test's own.</summary>
    public static ProcessStartInfo StartInfo(LabHost? host, string file, IEnumerable<string> arguments) => host is null
        ? new ProcessStartInfo(file, arguments)
        : new ProcessStartInfo("ip", ["netns", "exec", host.Namespace, file, .. arguments]);

    public async ValueTask DisposeAsync()
    {
        _stopping.Cancel();
        foreach (var reader in _readers)
        {
            reader.Join();
        }

        foreach (var port in _ports)
        {
            port?.Dispose();
        }

        foreach (var host in _hosts.Values)
        {
            await TryIpAsync("netns", "delete", host.Namespace);
        }

        _stopping.Dispose();
    }

    private async Task AddHostAsync(string name, int octet)
    {
        var host = new LabHost(name, $"{Prefix}-{Environment.ProcessId}-{_id}-{name}", IPAddress.Parse($"{_subnet}.{octet}"), octet);
        var device = new TunDevice($"{Prefix}{_id}{octet}");
        _ports[octet] = new Port(device, host);
        _hosts.Add(name, host);
        await IpAsync("netns", "add", host.Namespace);
        await IpAsync("link", "set", device.Name, "netns", host.Namespace);
        await IpAsync("-n", host.Namespace, "addr", "add", $"{host.Address}/24", "dev", device.Name);
        await IpAsync("-n", host.Namespace, "link", "set", device.Name, "up");
        await IpAsync("-n", host.Namespace, "link", "set", "lo", "up");
    }

    private void StartReading(Port port)
    {
        var thread = new Thread(() => Read(port)) { IsBackground = true, Name = $"lab {port.Device.Name}" };
        _readers.Add(thread);
        thread.Start();
    }

    /// <summary>One port's loop: each packet read goes to the port of its destination, unless a fault drops it.</summary>
    private void Read(Port from)
    {
        var buffer = new byte[65536];
        while (!_stopping.IsCancellationRequested)
        {
            var length = from.Device.Read(buffer, timeoutMilliseconds: 100);
            if (length < 0)
            {
                return;
            }

            // IPv4 only (version 4, a 20-byte header at least); the lab's hosts have no IPv6 addresses on these links.
            if (length < 20 || buffer[0] >> 4 != 4 || buffer[16] != _subnetBytes[0] || buffer[17] != _subnetBytes[1]
                || buffer[18] != _subnetBytes[2] || _ports[buffer[19]] is not { } to)
            {
                continue;
            }

            var (sourcePort, destinationPort) = Ports(buffer, length);
            var packet = new Packet(from.Host, to.Host, sourcePort, destinationPort);
            var delay = TimeSpan.Zero;
            var drop = false;
            foreach (var fault in _faults)
            {
                if (fault.Matches(packet))
                {
                    drop |= fault.Loss >= 1 || (fault.Loss > 0 && Random.Shared.NextDouble() < fault.Loss);
                    delay = fault.Delay > delay ? fault.Delay : delay;
                }
            }

            if (drop)
            {
                Interlocked.Increment(ref _dropped);
                continue;
            }

            Interlocked.Increment(ref _forwarded);
            if (delay == TimeSpan.Zero)
            {
                to.Device.Write(buffer, length);
            }
            else
            {
                to.Delay(buffer.AsSpan(0, length).ToArray(), Stopwatch.GetTimestamp() + (long)(delay.TotalSeconds * Stopwatch.Frequency));
            }
        }
    }

    /// <summary>The TCP or UDP source and destination ports of an IPv4 packet (0 for other protocols and later fragments).</summary>
    private static (int Source, int Destination) Ports(byte[] packet, int length)
    {
        var headerLength = (packet[0] & 0x0f) * 4;
        var protocol = packet[9];
        var fragmentOffset = ((packet[6] & 0x1f) << 8) | packet[7];
        return protocol is 6 or 17 && fragmentOffset == 0 && length >= headerLength + 4
            ? ((packet[headerLength] << 8) | packet[headerLength + 1], (packet[headerLength + 2] << 8) | packet[headerLength + 3])
            : (0, 0);
    }

    /// <summary>A /24 of 10.x not routed on this machine (checked against its routes).</summary>
    private static async Task<string> FreeSubnetAsync()
    {
        var routes = await RunAsync("ip", ["-4", "route", "show", "table", "all"]);
        for (var attempt = 0; attempt < 100; attempt++)
        {
            var candidate = $"10.{Random.Shared.Next(100, 250)}.{Random.Shared.Next(0, 256)}";
            if (!routes.Contains($"{candidate}.", StringComparison.Ordinal) && !routes.Contains($"10.{candidate.Split('.')[1]}.0.0/16", StringComparison.Ordinal))
            {
                return candidate;
            }
        }

        throw new InvalidOperationException("No free 10.x.y.0/24 for the network lab.");
    }

    /// <summary>Namespaces of labs whose test process is gone (killed before it could clean up).</summary>
    private static async Task RemoveLeftoversAsync()
    {
        foreach (var line in (await RunAsync("ip", ["netns", "list"])).Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var name = line.Split(' ')[0];
            var parts = name.Split('-');
            if (parts.Length >= 4 && parts[0] == Prefix && int.TryParse(parts[1], CultureInfo.InvariantCulture, out var pid) && !Directory.Exists($"/proc/{pid}"))
            {
                await TryIpAsync("netns", "delete", name);
            }
        }
    }

    private static async Task IpAsync(params string[] arguments) => await RunAsync("ip", arguments);

    private static async Task TryIpAsync(params string[] arguments)
    {
        try
        {
            await RunAsync("ip", arguments);
        }
        catch (InvalidOperationException)
        {
            // Already gone.
        }
    }

    private static async Task<string> RunAsync(string file, string[] arguments)
    {
        var start = new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', arguments)} failed ({process.ExitCode}): {await stderr}");
        }

        return await stdout;
    }

    /// <summary>Where the switch delivers a host's packets, and its delay line: packets held until due, in order.</summary>
    private sealed class Port(TunDevice device, LabHost? host) : IDisposable
    {
        private readonly BlockingCollection<(byte[] Packet, long Due)> _delayed = new();
        private Thread? _delayLine;

        public TunDevice Device { get; } = device;

        /// <summary>The host behind this port; null for this machine's own namespace.</summary>
        public LabHost? Host { get; } = host;

        public void Delay(byte[] packet, long due)
        {
            if (_delayLine is null)
            {
                lock (_delayed)
                {
                    _delayLine ??= StartDelayLine();
                }
            }

            _delayed.Add((packet, due));
        }

        public void Dispose()
        {
            _delayed.CompleteAdding();
            _delayLine?.Join();
            Device.Dispose();
            _delayed.Dispose();
        }

        private Thread StartDelayLine()
        {
            var thread = new Thread(() =>
            {
                foreach (var (packet, due) in _delayed.GetConsumingEnumerable())
                {
                    // Never early: a sleep may end up to a millisecond before its time.
                    for (var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), due); wait > TimeSpan.Zero;
                         wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), due))
                    {
                        Thread.Sleep((int)Math.Ceiling(wait.TotalMilliseconds));
                    }

                    Device.Write(packet, packet.Length);
                }
            }) { IsBackground = true, Name = $"lab {Device.Name} delay" };
            thread.Start();
            return thread;
        }
    }
}

/// <summary>A host of a <see cref="NetworkLab"/>: its network namespace and address.</summary>
public sealed record LabHost(string Name, string Namespace, IPAddress Address, int Octet)
{
    public override string ToString() => $"{Name} ({Address})";
}

/// <summary>What the switch knows of a packet: where it comes from and goes to (null: this machine), and its ports.</summary>
public readonly record struct Packet(LabHost? From, LabHost? To, int SourcePort, int DestinationPort);

/// <summary>
/// A fault on the lab's links: the packets it <see cref="Matches"/> are lost with probability <see cref="Loss"/>
/// (1: all, a cut) and delayed by <see cref="Delay"/>.
/// </summary>
public sealed record Fault(string Name, Func<Packet, bool> Matches, double Loss = 1, TimeSpan Delay = default)
{
    /// <summary>Every packet to or from <paramref name="host"/>: it is cut off from everything.</summary>
    public static Fault Isolate(LabHost host) =>
        new($"{host.Name} cut off", p => p.From == host || p.To == host);

    /// <summary>Every packet between <paramref name="host"/> and any of <paramref name="others"/>, both ways.</summary>
    public static Fault Between(LabHost host, params LabHost[] others) =>
        new($"{host.Name} cut from {string.Join(", ", others.Select(o => o.Name))}",
            p => (p.From == host && others.Contains(p.To)) || (p.To == host && others.Contains(p.From)));

    /// <summary>Every packet between <paramref name="host"/> and a service of this machine on <paramref name="port"/> (PostgreSQL), both ways.</summary>
    public static Fault FromMachinePort(LabHost host, string service, int port) =>
        new($"{host.Name} cut from {service}",
            p => (p.From == host && p.To is null && p.DestinationPort == port) || (p.From is null && p.To == host && p.SourcePort == port));

    /// <summary>Packets to <paramref name="host"/>'s <paramref name="ports"/> only: it can still send, and hear answers on connections it opened.</summary>
    public static Fault IncomingTo(LabHost host, params int[] ports) =>
        new($"packets to {host.Name}:{string.Join(",", ports)} dropped", p => p.To == host && ports.Contains(p.DestinationPort));

    /// <summary>Delay and loss on every packet of every link.</summary>
    public static Fault Degrade(TimeSpan delay, double loss) =>
        new($"{delay.TotalMilliseconds:F0} ms delay, {loss:P0} loss", _ => true, loss, delay);
}
