using System.Runtime.InteropServices;

namespace EdgeLlm.IO;

/// <summary>What a path names, without following a final symbolic link (lstat).</summary>
public enum FileKind { Missing, Regular, Directory, SymbolicLink, CharacterDevice, BlockDevice, Fifo, Socket, Other }

/// <summary>
/// <c>lstat</c> through glibc, read for the file-type bits only. .NET's FileInfo does not tell a device node or a fifo
/// from a regular file, and an output path must never replace one. glibc 2.33+ exports <c>lstat</c>; older ones
/// (the arm64 floor is 2.31) only <c>__lxstat(ver, …)</c>. st_mode sits at byte 24 of struct stat on x86-64 and at 16
/// on arm64 (the generic layout); elsewhere the kind is reported as <see cref="FileKind.Other"/> when it exists.
/// </summary>
public static unsafe class FileKinds
{
    private static readonly delegate* unmanaged<byte*, byte*, int> Lstat;
    private static readonly delegate* unmanaged<int, byte*, byte*, int> Lxstat;

    static FileKinds()
    {
        if (!OperatingSystem.IsLinux() || !NativeLibrary.TryLoad("libc.so.6", out nint libc)) return;
        if (NativeLibrary.TryGetExport(libc, "lstat", out nint f)) Lstat = (delegate* unmanaged<byte*, byte*, int>)f;
        else if (NativeLibrary.TryGetExport(libc, "__lxstat", out nint g)) Lxstat = (delegate* unmanaged<int, byte*, byte*, int>)g;
    }

    public static FileKind Of(string path)
    {
        int modeOffset = RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 => 24,
            Architecture.Arm64 => 16,
            _ => -1,
        };
        if (modeOffset < 0 || (Lstat == null && Lxstat == null)) return Fallback(path);
        byte[] name = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        byte* st = stackalloc byte[512];
        int rc;
        fixed (byte* p = name)
            rc = Lstat != null ? Lstat(p, st) : Lxstat(RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 1 : 0, p, st);
        if (rc != 0) return Fallback(path);
        uint mode = *(uint*)(st + modeOffset) & 0xF000;
        return mode switch
        {
            0x8000 => FileKind.Regular,
            0x4000 => FileKind.Directory,
            0xA000 => FileKind.SymbolicLink,
            0x2000 => FileKind.CharacterDevice,
            0x6000 => FileKind.BlockDevice,
            0x1000 => FileKind.Fifo,
            0xC000 => FileKind.Socket,
            _ => FileKind.Other,
        };
    }

    /// <summary>What .NET can tell: missing, a directory, a link, or "a file" (reported as Regular).</summary>
    private static FileKind Fallback(string path)
    {
        var info = new FileInfo(path);
        if (info.LinkTarget is not null) return FileKind.SymbolicLink;
        if (Directory.Exists(path)) return FileKind.Directory;
        return info.Exists ? FileKind.Regular : FileKind.Missing;
    }

    public static string Describe(FileKind k) => k switch
    {
        FileKind.Directory => "a directory",
        FileKind.SymbolicLink => "a symbolic link",
        FileKind.CharacterDevice => "a character device",
        FileKind.BlockDevice => "a block device",
        FileKind.Fifo => "a named pipe",
        FileKind.Socket => "a socket",
        FileKind.Regular => "a regular file",
        FileKind.Missing => "missing",
        _ => "not a regular file",
    };
}
