using System.Buffers.Binary;
using System.Text;

namespace EdgeLlm.Convert.Sources;

/// <summary>A whitelisted global named by a pickle (a class or function it refers to; never resolved or run).</summary>
public sealed record PickleGlobal(string Module, string Name)
{
    public string FullName => Module + "." + Name;
}

/// <summary>A tensor storage named by a persistent id: its element type, the archive key of its bytes, its length.</summary>
public sealed record PickleStorage(SourceDType DType, string Key, string Location, long Numel);

/// <summary>The arguments of one <c>torch._utils._rebuild_tensor_v2</c> call: a strided view of a storage.</summary>
public sealed record PickleTensor(PickleStorage Storage, long StorageOffset, long[] Size, long[] Stride)
{
    public long Numel { get { long n = 1; foreach (long d in Size) n *= d; return n; } }

    /// <summary>True when the strides are those of a C-contiguous (row-major) tensor of this size.</summary>
    public bool IsContiguous
    {
        get
        {
            long expect = 1;
            for (int i = Size.Length - 1; i >= 0; i--)
            {
                if (Size[i] != 1 && Stride[i] != expect) return false;
                expect *= Size[i];
            }
            return true;
        }
    }
}

/// <summary>A pickled dict or OrderedDict, in insertion order (keys are not hashed; checkpoints have few hundred).</summary>
public sealed class PickleDict
{
    public List<KeyValuePair<object?, object?>> Items { get; } = new();
}

/// <summary>
/// A minimal pickle interpreter for <c>torch.save</c> checkpoints (protocol 2). It builds plain values (None,
/// bool, long, double, string, tuple = object?[], list, <see cref="PickleDict"/>) and the few torch objects a
/// state dict needs, and nothing else: a GLOBAL outside <see cref="AllowedGlobals"/> is rejected when it is read,
/// REDUCE only accepts <c>collections.OrderedDict</c> and <c>torch._utils._rebuild_tensor_v2</c>, and any opcode
/// not listed in the switch below is an error naming it and its offset. Nothing in the pickle is ever executed.
/// Stack, mark nesting, memo and string sizes are bounded.
/// </summary>
public static class PickleReader
{
    public const int MaxStack = 1 << 20;
    public const int MaxMarkDepth = 256;
    public const int MaxMemo = 1 << 20;
    public const int MaxDims = 8;

    private static readonly PickleGlobal OrderedDict = new("collections", "OrderedDict");
    private static readonly PickleGlobal RebuildTensorV2 = new("torch._utils", "_rebuild_tensor_v2");

    /// <summary>The only globals a pickle may name: the state-dict container, the tensor rebuild function, the storage classes.</summary>
    public static IReadOnlyList<string> AllowedGlobals { get; } =
        ["collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch.BFloat16Storage", "torch.HalfStorage", "torch.FloatStorage"];

    private static SourceDType? StorageDType(PickleGlobal g) => g.Module != "torch" ? null : g.Name switch
    {
        "BFloat16Storage" => SourceDType.BF16,
        "HalfStorage" => SourceDType.F16,
        "FloatStorage" => SourceDType.F32,
        _ => null,
    };

    /// <summary>Runs the pickle and returns the value at STOP. <paramref name="name"/> is used in error messages.</summary>
    public static object? Load(string name, ReadOnlySpan<byte> data) => new Machine(name, data).Run();

    /// <summary>
    /// Loads a state dict: a (Ordered)Dict from string keys to tensors, in file order. Any other shape of data is an
    /// error naming the offending key.
    /// </summary>
    public static List<KeyValuePair<string, PickleTensor>> LoadStateDict(string name, ReadOnlySpan<byte> data)
    {
        var root = Load(name, data);
        if (root is not PickleDict dict) throw new EdgeLlmException($"{name}: the pickle holds a {Describe(root)}, not a state dict");
        var result = new List<KeyValuePair<string, PickleTensor>>(dict.Items.Count);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (k, v) in dict.Items)
        {
            if (k is not string key) throw new EdgeLlmException($"{name}: state dict key {Describe(k)} is not a string");
            if (v is not PickleTensor t) throw new EdgeLlmException($"{name}: state dict entry '{key}' is a {Describe(v)}, not a tensor");
            if (!seen.Add(key)) throw new EdgeLlmException($"{name}: state dict key '{key}' appears twice");
            result.Add(new(key, t));
        }
        return result;
    }

    internal static string Describe(object? v) => v switch
    {
        null => "None",
        bool => "bool",
        long => "int",
        double => "float",
        string s => $"str '{(s.Length > 40 ? s[..40] + "..." : s)}'",
        object?[] => "tuple",
        List<object?> => "list",
        PickleDict => "dict",
        PickleGlobal g => $"global '{g.FullName}'",
        PickleStorage => "storage",
        PickleTensor => "tensor",
        _ => v.GetType().Name,
    };

    /// <summary>Names of pickle opcodes, for error messages (including ones this reader refuses).</summary>
    internal static string OpcodeName(byte op) => op switch
    {
        0x80 => "PROTO", (byte)'.' => "STOP", (byte)'(' => "MARK", (byte)'}' => "EMPTY_DICT", (byte)']' => "EMPTY_LIST",
        (byte)')' => "EMPTY_TUPLE", (byte)'t' => "TUPLE", 0x85 => "TUPLE1", 0x86 => "TUPLE2", 0x87 => "TUPLE3",
        (byte)'s' => "SETITEM", (byte)'u' => "SETITEMS", (byte)'a' => "APPEND", (byte)'e' => "APPENDS",
        (byte)'J' => "BININT", (byte)'K' => "BININT1", (byte)'M' => "BININT2", 0x8a => "LONG1", 0x8b => "LONG4",
        (byte)'G' => "BINFLOAT", (byte)'X' => "BINUNICODE", 0x8c => "SHORT_BINUNICODE", (byte)'T' => "BINSTRING",
        (byte)'U' => "SHORT_BINSTRING", (byte)'N' => "NONE", 0x88 => "NEWTRUE", 0x89 => "NEWFALSE",
        (byte)'q' => "BINPUT", (byte)'r' => "LONG_BINPUT", (byte)'h' => "BINGET", (byte)'j' => "LONG_BINGET",
        0x94 => "MEMOIZE", (byte)'c' => "GLOBAL", (byte)'R' => "REDUCE", (byte)'Q' => "BINPERSID", (byte)'b' => "BUILD",
        (byte)'P' => "PERSID", (byte)'i' => "INST", (byte)'o' => "OBJ", 0x81 => "NEWOBJ", 0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL", 0x82 => "EXT1", 0x83 => "EXT2", 0x84 => "EXT4", 0x95 => "FRAME",
        (byte)'I' => "INT", (byte)'L' => "LONG", (byte)'F' => "FLOAT", (byte)'S' => "STRING", (byte)'V' => "UNICODE",
        (byte)'d' => "DICT", (byte)'l' => "LIST", (byte)'p' => "PUT", (byte)'g' => "GET", (byte)'0' => "POP",
        (byte)'1' => "POP_MARK", (byte)'2' => "DUP", 0x8d => "BINUNICODE8", 0x8e => "BINBYTES8", 0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS", 0x91 => "FROZENSET", (byte)'B' => "BINBYTES", (byte)'C' => "SHORT_BINBYTES",
        0x96 => "BYTEARRAY8", 0x97 => "NEXT_BUFFER", 0x98 => "READONLY_BUFFER",
        _ => "unknown",
    };

    private ref struct Machine
    {
        private readonly string _name;
        private readonly ReadOnlySpan<byte> _data;
        private int _pos;
        private int _opAt;
        private byte _op;
        private readonly List<object?> _stack = new();
        private readonly List<int> _marks = new();
        private readonly Dictionary<long, object?> _memo = new();
        private readonly Dictionary<string, PickleStorage> _storages = new(StringComparer.Ordinal);

        public Machine(string name, ReadOnlySpan<byte> data)
        {
            _name = name;
            _data = data;
        }

        public object? Run()
        {
            while (true)
            {
                if (_pos >= _data.Length) throw Fail(_data.Length, "the pickle ends without STOP (truncated)");
                _opAt = _pos;
                _op = _data[_pos++];
                switch (_op)
                {
                    case 0x80: // PROTO
                    {
                        byte v = Byte();
                        if (v > 5) throw Here($"pickle protocol {v} is not supported");
                        break;
                    }
                    case (byte)'.': // STOP
                    {
                        var result = Pop();
                        if (_stack.Count != 0 || _marks.Count != 0) throw Here($"STOP with {_stack.Count} values and {_marks.Count} marks left on the stack");
                        return result;
                    }
                    case (byte)'(':
                        if (_marks.Count >= MaxMarkDepth) throw Here($"more than {MaxMarkDepth} nested MARKs");
                        _marks.Add(_stack.Count);
                        break;
                    case (byte)'}': Push(new PickleDict()); break;
                    case (byte)']': Push(new List<object?>()); break;
                    case (byte)')': Push(Array.Empty<object?>()); break;
                    case (byte)'t': Push(PopMark().ToArray()); break;
                    case 0x85: { var a = Pop(); Push(new[] { a }); break; }
                    case 0x86: { var b = Pop(); var a = Pop(); Push(new[] { a, b }); break; }
                    case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); Push(new[] { a, b, c }); break; }
                    case (byte)'s':
                    {
                        var v = Pop(); var k = Pop();
                        TargetDict().Items.Add(new(k, v));
                        break;
                    }
                    case (byte)'u':
                    {
                        var items = PopMark();
                        if (items.Count % 2 != 0) throw Here("SETITEMS with an odd number of values");
                        var d = TargetDict();
                        for (int i = 0; i < items.Count; i += 2) d.Items.Add(new(items[i], items[i + 1]));
                        break;
                    }
                    case (byte)'a': { var v = Pop(); TargetList().Add(v); break; }
                    case (byte)'e': { var items = PopMark(); TargetList().AddRange(items); break; }
                    case (byte)'J': Push((long)BinaryPrimitives.ReadInt32LittleEndian(Bytes(4))); break;
                    case (byte)'K': Push((long)Byte()); break;
                    case (byte)'M': Push((long)BinaryPrimitives.ReadUInt16LittleEndian(Bytes(2))); break;
                    case 0x8a: // LONG1: n-byte two's complement, little-endian
                    {
                        int n = Byte();
                        if (n > 8) throw Here($"LONG1 of {n} bytes does not fit in 64 bits");
                        var b = Bytes(n);
                        long v = 0;
                        for (int i = n - 1; i >= 0; i--) v = (v << 8) | b[i];
                        if (n is > 0 and < 8 && (b[n - 1] & 0x80) != 0) v -= 1L << (8 * n);
                        Push(v);
                        break;
                    }
                    case (byte)'G': Push(BinaryPrimitives.ReadDoubleBigEndian(Bytes(8))); break;
                    case (byte)'X': Push(Encoding.UTF8.GetString(Bytes(Length32()))); break;
                    case 0x8c: Push(Encoding.UTF8.GetString(Bytes(Byte()))); break;
                    case (byte)'T': Push(Encoding.Latin1.GetString(Bytes(Length32()))); break;
                    case (byte)'U': Push(Encoding.Latin1.GetString(Bytes(Byte()))); break;
                    case (byte)'N': Push(null); break;
                    case 0x88: Push(true); break;
                    case 0x89: Push(false); break;
                    case (byte)'q': Put(Byte()); break;
                    case (byte)'r': Put(BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4))); break;
                    case 0x94: Put(_memo.Count); break;
                    case (byte)'h': Get(Byte()); break;
                    case (byte)'j': Get(BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4))); break;
                    case (byte)'c': Push(Global()); break;
                    case (byte)'Q': { var pid = Pop(); Push(PersistentLoad(pid)); break; }
                    case (byte)'R': { var args = Pop(); var fn = Pop(); Push(Reduce(fn, args)); break; }
                    case (byte)'b':
                    {
                        Pop(); // the state: an OrderedDict's instance attributes (torch's _metadata); not needed
                        var target = Peek();
                        if (target is not PickleDict) throw Here($"BUILD on a {Describe(target)} is not allowed (only on an OrderedDict)");
                        break;
                    }
                    default:
                        throw Here($"opcode 0x{_op:x2} ({OpcodeName(_op)}) is not allowed in a checkpoint pickle");
                }
            }
        }

        private PickleGlobal Global()
        {
            string module = Line(), name = Line();
            var g = new PickleGlobal(module, name);
            foreach (string allowed in AllowedGlobals)
                if (allowed == g.FullName) return g;
            throw Here($"GLOBAL '{g.FullName}' is not allowed, refused without running anything (a checkpoint may only name {string.Join(", ", AllowedGlobals)})");
        }

        private PickleStorage PersistentLoad(object? pid)
        {
            if (pid is not object?[] { Length: 5 } t || t[0] is not "storage")
                throw Here($"persistent id {Describe(pid)} is not a ('storage', type, key, location, numel) tuple");
            if (t[1] is not PickleGlobal g || StorageDType(g) is not { } dtype)
                throw Here($"persistent id storage type {Describe(t[1])} is not a BFloat16/Half/Float storage class");
            if (t[2] is not string key || key.Length == 0 || key.Length > 256) throw Here($"persistent id key {Describe(t[2])} is not a short string");
            if (t[3] is not string location) throw Here($"persistent id location {Describe(t[3])} is not a string");
            if (t[4] is not long numel || numel < 0) throw Here($"persistent id element count {Describe(t[4])} is not a non-negative int");
            var s = new PickleStorage(dtype, key, location, numel);
            if (_storages.TryGetValue(key, out var prev))
            {
                if (prev.DType != dtype || prev.Numel != numel) throw Here($"storage '{key}' is named twice with different types or sizes");
                return prev;
            }
            _storages[key] = s;
            return s;
        }

        private object? Reduce(object? fn, object? args)
        {
            if (fn is not PickleGlobal g) throw Here($"REDUCE on a {Describe(fn)} (not a callable) is not allowed, refused without running anything");
            if (args is not object?[] a) throw Here($"REDUCE on '{g.FullName}' with {Describe(args)} arguments (not a tuple)");
            if (g == OrderedDict)
            {
                if (a.Length != 0) throw Here($"REDUCE on '{g.FullName}' with {a.Length} arguments (only an empty OrderedDict() is allowed)");
                return new PickleDict();
            }
            if (g == RebuildTensorV2) return RebuildTensor(a);
            throw Here($"REDUCE on '{g.FullName}' is not allowed, refused without running anything (only collections.OrderedDict and torch._utils._rebuild_tensor_v2 may be called)");
        }

        /// <summary>_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]).</summary>
        private PickleTensor RebuildTensor(object?[] a)
        {
            if (a.Length is not (6 or 7)) throw Here($"_rebuild_tensor_v2 with {a.Length} arguments (expected 6 or 7)");
            if (a[0] is not PickleStorage storage) throw Here($"_rebuild_tensor_v2 storage argument is a {Describe(a[0])}");
            if (a[1] is not long offset || offset < 0) throw Here($"_rebuild_tensor_v2 storage offset {Describe(a[1])} is not a non-negative int");
            long[] size = IntTuple(a[2], "size"), stride = IntTuple(a[3], "stride");
            if (size.Length != stride.Length) throw Here($"_rebuild_tensor_v2 size has {size.Length} dims but stride has {stride.Length}");
            if (a[4] is not bool) throw Here($"_rebuild_tensor_v2 requires_grad is a {Describe(a[4])}");
            if (a[5] is not PickleDict { Items.Count: 0 }) throw Here("_rebuild_tensor_v2 backward hooks are not an empty OrderedDict");
            // The furthest element the view touches must lie inside the storage (checked without overflow).
            long last = offset;
            for (int i = 0; i < size.Length; i++)
            {
                if (size[i] == 0) { last = -1; break; }
                if (stride[i] != 0 && size[i] - 1 > (long.MaxValue - last) / stride[i]) throw Here("_rebuild_tensor_v2 view extent overflows");
                last += (size[i] - 1) * stride[i];
            }
            if (last >= storage.Numel) throw Here($"tensor view reaches element {last} of storage '{storage.Key}' which has {storage.Numel} elements");
            return new PickleTensor(storage, offset, size, stride);
        }

        private long[] IntTuple(object? v, string what)
        {
            if (v is not object?[] t) throw Here($"_rebuild_tensor_v2 {what} is a {Describe(v)}, not a tuple");
            if (t.Length > MaxDims) throw Here($"_rebuild_tensor_v2 {what} has {t.Length} dims (at most {MaxDims})");
            var r = new long[t.Length];
            for (int i = 0; i < t.Length; i++)
                r[i] = t[i] is long l && l >= 0 ? l : throw Here($"_rebuild_tensor_v2 {what}[{i}] is {Describe(t[i])}, not a non-negative int");
            return r;
        }

        private PickleDict TargetDict()
        {
            var t = Peek();
            return t as PickleDict ?? throw Here($"{OpcodeName(_op)} on a {Describe(t)} (not a dict)");
        }

        private List<object?> TargetList()
        {
            var t = Peek();
            return t as List<object?> ?? throw Here($"{OpcodeName(_op)} on a {Describe(t)} (not a list)");
        }

        private void Put(long index)
        {
            if (_stack.Count == 0) throw Here("memo store from an empty stack");
            if (!_memo.ContainsKey(index) && _memo.Count >= MaxMemo) throw Here($"more than {MaxMemo} memo entries");
            _memo[index] = _stack[^1];
        }

        private void Get(long index)
        {
            if (!_memo.TryGetValue(index, out var v)) throw Here($"memo entry {index} was never stored");
            Push(v);
        }

        private void Push(object? v)
        {
            if (_stack.Count >= MaxStack) throw Here($"more than {MaxStack} values on the stack");
            _stack.Add(v);
        }

        private object? Pop()
        {
            int floor = _marks.Count > 0 ? _marks[^1] : 0;
            if (_stack.Count <= floor) throw Here(_stack.Count == 0 ? "pop from an empty stack" : "pop across a MARK");
            var v = _stack[^1];
            _stack.RemoveAt(_stack.Count - 1);
            return v;
        }

        private object? Peek()
        {
            int floor = _marks.Count > 0 ? _marks[^1] : 0;
            if (_stack.Count <= floor) throw Here("no object below the arguments");
            return _stack[^1];
        }

        private List<object?> PopMark()
        {
            if (_marks.Count == 0) throw Here("no MARK to pop to");
            int at = _marks[^1];
            _marks.RemoveAt(_marks.Count - 1);
            var items = _stack.GetRange(at, _stack.Count - at);
            _stack.RemoveRange(at, _stack.Count - at);
            return items;
        }

        private byte Byte() => Bytes(1)[0];

        private ReadOnlySpan<byte> Bytes(int n)
        {
            if (n < 0 || n > _data.Length - _pos) throw Here($"needs {n} bytes but only {_data.Length - _pos} are left (truncated)");
            var s = _data.Slice(_pos, n);
            _pos += n;
            return s;
        }

        private int Length32()
        {
            uint n = BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4));
            if (n > _data.Length - _pos) throw Here($"string of {n} bytes but only {_data.Length - _pos} are left (truncated)");
            return (int)n;
        }

        /// <summary>A newline-terminated ASCII name of a GLOBAL (at most 256 bytes).</summary>
        private string Line()
        {
            int end = _data[_pos..].IndexOf((byte)'\n');
            if (end < 0 || end > 256) throw Here("GLOBAL name is not a short newline-terminated line");
            var s = _data.Slice(_pos, end);
            foreach (byte b in s)
                if (b < 0x20 || b > 0x7e) throw Here("GLOBAL name has a non-printable byte");
            _pos += end + 1;
            return Encoding.ASCII.GetString(s);
        }

        private readonly EdgeLlmException Here(string problem) => Fail(_opAt, problem);

        private readonly EdgeLlmException Fail(long offset, string problem) =>
            new($"{_name}: pickle offset {offset}: {problem}");
    }
}
