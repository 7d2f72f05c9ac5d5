package record

// CloseFileForTest closes the file under r, standing in for a failing disk.
func CloseFileForTest(r *Recorder) { r.f.Close() }
