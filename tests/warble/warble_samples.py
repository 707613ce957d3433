"""Warbles used by several test files and the benchmark's checks."""

BBP_PI = """#pi{SETPRECISION(110)
s=0
FOR(k=0;k<95;k++){
  s=s+1/POW(16,k)*(4/(8*k+1)-2/(8*k+4)-1/(8*k+5)-1/(8*k+6))
}
PRINT(s)}"""
