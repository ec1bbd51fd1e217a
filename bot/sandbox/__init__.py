"""Local stand-ins for the WeChat API and Aliyun SMS, for `memberbot sandbox` and the tests."""
